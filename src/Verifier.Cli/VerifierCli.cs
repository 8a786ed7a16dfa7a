using System.CommandLine;
using Verifier.Core;

namespace Verifier.Cli;

public static class VerifierCli
{
    public static RootCommand Build()
    {
        var root = new RootCommand(
            "Verifier: how well do a sparse crosscoder's features explain a transformer, provably, and where do they " +
            "interact nonlinearly?\n\nModels are directories with config.json and model.safetensors in TransformerLens " +
            "layout; datasets are JSON Lines (see spec/). Every command takes --json for a machine-readable summary on " +
            "stdout. Exit codes: 0 ok, 1 failure, 2 usage, 3 invalid input file, 4 unsupported model, 5 output exists, 6 mismatched inputs, 7 transcript rejected, 8 audit chain broken, 9 numeric overflow.");
        root.Subcommands.Add(DataCommands.MakeData());
        root.Subcommands.Add(ModelCommands.TrainModel());
        root.Subcommands.Add(ModelCommands.Eval());
        root.Subcommands.Add(ModelCommands.Info());
        root.Subcommands.Add(CrosscoderCommands.Train());
        root.Subcommands.Add(CrosscoderCommands.Eval());
        root.Subcommands.Add(BoundCommand.Build());
        root.Subcommands.Add(InteractionsCommand.Build());
        root.Subcommands.Add(AnalysisCommands.Suppress());
        root.Subcommands.Add(SweepCommand.Build());
        root.Subcommands.Add(DiffCommand.Build());
        root.Subcommands.Add(AdversarialCommand.Build());
        root.Subcommands.Add(ClusterCommand.Build());
        root.Subcommands.Add(MergeCommand.Build());
        root.Subcommands.Add(CheckCommand.Build());
        root.Subcommands.Add(StoreCommands.Runs());
        root.Subcommands.Add(StoreCommands.FrontierCommand());
        root.Subcommands.Add(StoreCommands.Audit());
        root.Subcommands.Add(DemoCommand.Build());
        root.Subcommands.Add(BenchCommand.Build());
        return root;
    }

    /// <summary>Parses and runs; parse errors print the problem and a hint on stderr and exit 2.</summary>
    public static async Task<int> RunAsync(string[] args, TextWriter? output = null, TextWriter? error = null, CancellationToken ct = default)
    {
        var root = Build();
        var config = new InvocationConfiguration { Output = output ?? Console.Out, Error = error ?? Console.Error };
        var pr = root.Parse(args);
        if (pr.Errors.Count > 0)
        {
            foreach (var e in pr.Errors) config.Error.WriteLine($"error: {e.Message}");
            string cmd = pr.CommandResult.Command is RootCommand ? "verifier" : $"verifier {pr.CommandResult.Command.Name}";
            config.Error.WriteLine($"Run '{cmd} --help' for usage.");
            return ExitCodes.Usage;
        }
        return await pr.InvokeAsync(config, ct);
    }
}

/// <summary>Options shared by several commands.</summary>
static class Options
{
    public static Option<bool> Json() => new("--json") { Description = "Print a machine-readable JSON summary on stdout (messages and progress stay on stderr)" };
    public static Option<bool> Force() => new("--force") { Description = "Replace the output if it already exists (only after the new one is complete)" };
    public static Option<ulong> Seed(string what) => new("--seed") { Description = $"Seed for {what}", DefaultValueFactory = _ => 0UL };

    public static Option<T> Positive<T>(string name, string description, T? fallback = null) where T : struct, IComparable<T>
    {
        var o = new Option<T>(name) { Description = description };
        if (fallback is { } f) o.DefaultValueFactory = _ => f;
        o.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<T>().CompareTo(default) <= 0) r.AddError($"{name} must be positive");
        });
        return o;
    }
}

/// <summary>The task options of make-data and train-model.</summary>
sealed class TaskOptions
{
    public readonly Option<string> Task = new("--task")
    {
        Description = "Task: max-of-k | modular-addition | sort | text",
        Required = true,
    };
    public readonly Option<int?> Vocab = new("--vocab") { Description = "Number of value tokens (max-of-k: 64, sort: 16)" };
    public readonly Option<int?> K = new("--k") { Description = "Sequence length k (max-of-k and sort: 5)" };
    public readonly Option<int?> P = new("--p") { Description = "Modulus (modular-addition: 53)" };
    public readonly Option<string?> Text = new("--text") { Description = "text: the input file; a UTF-8 .txt for character-level language modelling, or (make-data --tokenizer) a .txt, .jsonl or .parquet file" };
    public readonly Option<int?> NCtx = new("--n-ctx") { Description = "Context length (text: 32; with --tokenizer the window length, BOS included)" };
    public readonly Option<int?> Trigger = new("--trigger") { Description = "max-of-k: plant a backdoor token (with it present, the label is 0)" };

    public TaskOptions() => Task.AcceptOnlyFromAmong([.. TaskCatalog.Names]);

    public void AddTo(Command c)
    {
        foreach (var o in new Option[] { Task, Vocab, K, P, Text, NCtx, Trigger }) c.Options.Add(o);
    }

    /// <summary>The --text input file, as a full path, when given.</summary>
    public string? TextPath(ParseResult pr) => pr.GetValue(Text) is string t ? Path.GetFullPath(t) : null;

    public ITask Create(ParseResult pr) => TaskCatalog.Create(pr.GetValue(Task)!,
        new TaskCatalog.Parameters(pr.GetValue(Vocab), pr.GetValue(K), pr.GetValue(P), pr.GetValue(Text), pr.GetValue(NCtx), pr.GetValue(Trigger)));
}
