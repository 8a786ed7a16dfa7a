return await Verifier.Cli.VerifierCli.RunAsync(args);
