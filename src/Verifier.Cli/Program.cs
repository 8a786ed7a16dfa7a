Verifier.Model.NativeAllocator.KeepLargeBlocks();
return await Verifier.Cli.VerifierCli.RunAsync(args);
