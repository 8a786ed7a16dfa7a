using System.CommandLine;
using Verifier.Bounds;
using Verifier.Core;

namespace Verifier.Cli;

/// <summary>`verifier merge SHARD… --out T.json` (spec/shards.md).</summary>
static class MergeCommand
{
    public static Command Build()
    {
        var shards = new Argument<FileInfo[]>("shards") { Description = "The transcripts of shards 0/n … n−1/n of one bound (any order)", Arity = ArgumentArity.OneOrMore };
        var output = new Option<FileInfo>("--out") { Description = "Merged transcript to write: SHARD steps naming each shard by SHA-256, then MEAN", Required = true };
        var db = StoreOptions.Db();
        var noRecord = new Option<bool>("--no-record") { Description = "Do not record the merged run in the store" };
        var force = Options.Force();
        var json = Options.Json();
        var cmd = new Command("merge", "Combine the transcripts of the n shards of one bound (bound --shard i/n) into one transcript about the whole dataset; refuses shards of different models, data, crosscoders or strategies, overlaps and gaps");
        cmd.Arguments.Add(shards);
        foreach (var o in new Option[] { output, db, noRecord, force, json }) cmd.Options.Add(o);
        cmd.SetAction((pr, ct) => Task.FromResult(CommandRunner.Run(pr, json, ct, ctx =>
        {
            string path = pr.GetValue(output)!.FullName;
            OutputGuard.Check("--out", path, directory: false, pr.GetValue(shards)!.Select(f => (string?)f.FullName), store: pr.GetValue(db)!.FullName);
            if (File.Exists(path) && !pr.GetValue(force)) throw new OutputExistsException(path);
            var read = pr.GetValue(shards)!.Select(f => Merge.Read(f.FullName)).ToList();
            var (b0, cost, steps, strategy, n) = Merge.Run(read, path, pr.GetValue(force));
            var arts = read[0].Artefacts;
            Verifier.Store.AuditHead? head = null;
            if (!pr.GetValue(noRecord))
            {
                using var store = new Verifier.Store.VerifierStore(pr.GetValue(db)!.FullName);
                store.RecordRun(new Verifier.Store.RunRecord(0, strategy, $"{{\"shards\":{n}}}", arts["model_weights"].Sha256, arts["dataset"].Sha256,
                    arts.TryGetValue("crosscoder_weights", out var c) ? c.Sha256 : null, b0, null, cost.Flops, cost.Bits, 0,
                    Hashing.Sha256File(path), path, ""), arts.Values);
                head = StoreOptions.ReportHead(ctx, store);
            }
            if (ctx.Json) ctx.WriteJson(StoreOptions.WithHead(new { B0 = b0, cost.Flops, cost.Bits, Strategy = strategy, Shards = n, Steps = steps, Transcript = path }, head));
            else
            {
                ctx.Say($"merged {n} shards of {strategy}: mean cross-entropy ≤ b₀ = {b0:R}");
                ctx.Say($"  proof cost {cost.Flops:N0} FLOPs; {steps} steps in {path}");
            }
            return ExitCodes.Ok;
        })));
        return cmd;
    }
}
