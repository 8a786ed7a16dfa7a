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
        var force = Options.Force();
        var json = Options.Json();
        var cmd = new Command("make-data", "Generate a labelled dataset from a built-in task, as JSON Lines (spec/dataset.md)");
        task.AddTo(cmd);
        foreach (var o in new Option[] { count, seed, output, force, json }) cmd.Options.Add(o);
        cmd.SetAction((pr, ct) => Task.FromResult(CommandRunner.Run(pr, json, ct, ctx =>
        {
            var t = task.Create(pr);
            string path = pr.GetValue(output)!.FullName;
            OutputGuard.Check("--out", path, directory: false, [task.TextPath(pr)]);
            if (File.Exists(path) && !pr.GetValue(force)) throw new OutputExistsException(path);
            var data = t.Generate(pr.GetValue(count), pr.GetValue(seed), "data");
            data.Save(path, overwrite: pr.GetValue(force));
            var summary = new
            {
                Out = path, Task = t.Name, Description = t.Describe(), Sequences = data.Count,
                LabelledPositions = data.LabelledPositions, DVocab = t.DVocab, DVocabOut = t.DVocabOut, NCtx = t.NCtx,
                Seed = pr.GetValue(seed), Sha256 = Hashing.Sha256File(path),
            };
            if (ctx.Json) ctx.WriteJson(summary);
            else ctx.Say($"Wrote {data.Count} sequences ({data.LabelledPositions} labelled positions) of {t.Describe()} to {path}");
            return ExitCodes.Ok;
        })));
        return cmd;
    }
}
