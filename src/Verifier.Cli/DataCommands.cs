using System.CommandLine;
using Verifier.Core;

namespace Verifier.Cli;

static class DataCommands
{
    public static Command MakeData()
    {
        var task = new TaskOptions();
        var count = Options.Positive<int>("--count", "Number of sequences", 4096);
        var seed = Options.Seed("sampling");
        var output = new Option<FileInfo>("--out") { Description = "Output JSON Lines file (spec/dataset.md)", Required = true };
        var all = new Option<bool>("--all") { Description = "The whole input space of an enumerable task (max-of-k, modular-addition, sort) in lexicographic order: writes a small descriptor that every --data accepts, not the sequences (spec/dataset.md)" };
        var force = Options.Force();
        var json = Options.Json();
        var cmd = new Command("make-data", "Generate a labelled dataset from a built-in task, as JSON Lines (spec/dataset.md)");
        task.AddTo(cmd);
        foreach (var o in new Option[] { count, seed, all, output, force, json }) cmd.Options.Add(o);
        cmd.SetAction((pr, ct) => Task.FromResult(CommandRunner.Run(pr, json, ct, ctx =>
        {
            bool whole = pr.GetValue(all);
            if (whole)
            {
                if (pr.GetValue(task.Task) == "text") throw new UsageException("--all: the task 'text' is not enumerable (its inputs are windows of a file)");
                if (pr.GetResult(count) is { Implicit: false }) throw new UsageException("--count does not apply with --all (the space has as many sequences as it has)");
                if (pr.GetResult(seed) is { Implicit: false }) throw new UsageException("--seed does not apply with --all (nothing is sampled)");
            }
            var t = task.Create(pr);
            string path = pr.GetValue(output)!.FullName;
            OutputGuard.Check("--out", path, directory: false, [task.TextPath(pr)]);
            if (File.Exists(path) && !pr.GetValue(force)) throw new OutputExistsException(path);
            var data = whole ? TokenDataset.Enumerated(EnumeratedSpace.Of(t)) : t.Generate(pr.GetValue(count), pr.GetValue(seed), "data");
            data.Save(path, overwrite: pr.GetValue(force));
            var summary = new
            {
                Out = path, Task = t.Name, Description = t.Describe(), Sequences = data.Count,
                LabelledPositions = data.LabelledPositions, DVocab = t.DVocab, DVocabOut = t.DVocabOut, NCtx = t.NCtx,
                Seed = whole ? (ulong?)null : pr.GetValue(seed), Sha256 = Hashing.Sha256File(path), Enumerated = whole, ContentHash = data.ContentHash(),
            };
            if (ctx.Json) ctx.WriteJson(summary);
            else if (whole) ctx.Say($"Wrote the descriptor of all {data.Count:N0} sequences ({data.LabelledPositions:N0} labelled positions) of {t.Describe()} to {path}; content hash {data.ContentHash()}");
            else ctx.Say($"Wrote {data.Count} sequences ({data.LabelledPositions} labelled positions) of {t.Describe()} to {path}");
            return ExitCodes.Ok;
        })));
        return cmd;
    }
}
