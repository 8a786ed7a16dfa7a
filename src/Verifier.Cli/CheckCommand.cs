using System.CommandLine;
using Verifier.Checker;
using Verifier.Core;

namespace Verifier.Cli;

static class CheckCommand
{
    public static Command Build()
    {
        var transcript = new Argument<FileInfo>("transcript") { Description = "Transcript to check (spec/transcript.md)" };
        var model = new Option<DirectoryInfo>("--model") { Description = "Model directory the transcript is about", Required = true };
        var crosscoder = new Option<DirectoryInfo?>("--crosscoder") { Description = "Crosscoder directory (transcripts of crosscoder strategies)" };
        var data = new Option<FileInfo>("--data") { Description = "Dataset the transcript is about", Required = true };
        var db = StoreOptions.Db();
        var noRecord = new Option<bool>("--no-record") { Description = "Do not record the check in the store" };
        var shard = new Option<string?>("--shard") { Description = "With a merged transcript: check only shard i/n's transcript (one job of a check array; spec/shards.md). Not recorded in the store" };
        var verdictOut = new Option<FileInfo?>("--verdict-out") { Description = "Also write the verdict as a file (format verifier-verdict/1) that a merged transcript's check can take with --shard-verdicts" };
        var shardVerdicts = new Option<DirectoryInfo?>("--shard-verdicts") { Description = "With a merged transcript: take each shard's verdict from the verdict files in DIR whose transcript hash, checker version and artefacts match, instead of re-checking it (trusts whoever could write DIR)" };
        var json = Options.Json();
        var cmd = new Command("check", "Replay a transcript in sound interval arithmetic with the independent checker: accepted, or the first step it cannot certify (exit 7)");
        cmd.Arguments.Add(transcript);
        foreach (var o in new Option[] { model, crosscoder, data, shard, verdictOut, shardVerdicts, db, noRecord, json }) cmd.Options.Add(o);
        cmd.SetAction((pr, ct) => Task.FromResult(CommandRunner.Run(pr, json, ct, ctx =>
        {
            string path = pr.GetValue(transcript)!.FullName;
            bool oneShard = pr.GetValue(shard) is not null;
            if (pr.GetValue(shard) is { } sh) path = ShardOf(path, ShardSpec.Parse(sh));
            var recorded = pr.GetValue(shardVerdicts) is { } dir ? ReadVerdicts(dir.FullName) : null;
            long size = File.Exists(path) ? new FileInfo(path).Length : 1;
            var v = ctx.WithProgress("checking", report => TranscriptChecker.Check(path, pr.GetValue(model)!.FullName, pr.GetValue(crosscoder)?.FullName,
                pr.GetValue(data)!.FullName, new SyncProgress<long>(b => report((double)b / Math.Max(1, size), $"{b / 1024} KiB read")), recorded));
            if (pr.GetValue(verdictOut) is { } vo)
            {
                OutputGuard.Check("--verdict-out", vo.FullName, directory: false,
                    [path, pr.GetValue(transcript)!.FullName, pr.GetValue(model)!.FullName, pr.GetValue(crosscoder)?.FullName, pr.GetValue(data)!.FullName], store: pr.GetValue(db)!.FullName);
                if (File.Exists(vo.FullName)) throw new OutputExistsException(vo.FullName);
                AtomicOutput.WriteAllText(vo.FullName, RecordedVerdict.Of(v, v.TranscriptSha256 ?? Hashing.Sha256File(path)).ToJson());
            }
            Verifier.Store.AuditHead? head = null;
            if (!pr.GetValue(noRecord) && !oneShard && v.Part is null)
            {
                using var store = new Verifier.Store.VerifierStore(pr.GetValue(db)!.FullName);
                Record(store, v, path);
                head = StoreOptions.ReportHead(ctx, store);
            }
            Print(ctx, v, path, head);
            return v.Accepted ? ExitCodes.Ok : ExitCodes.Rejected;
        })));
        return cmd;
    }

    /// <summary>The transcript of shard <paramref name="spec"/> named by a merged transcript (its SHARD step).</summary>
    static string ShardOf(string merged, ShardSpec spec)
    {
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(merged));
        foreach (var step in doc.RootElement.GetProperty("steps").EnumerateArray())
            if (step.GetProperty("lemma").GetString() == "SHARD" && step.GetProperty("scope").GetProperty("shard").GetInt32() == spec.Index
                && step.GetProperty("scope").GetProperty("count").GetInt32() == spec.Count)
            {
                string p = step.GetProperty("data").GetProperty("transcript").GetProperty("path").GetString()!;
                string full = Path.IsPathRooted(p) ? p : Path.Combine(Path.GetDirectoryName(merged)!, p);
                string sha = step.GetProperty("data").GetProperty("transcript").GetProperty("sha256").GetString()!;
                if (!File.Exists(full) || Hashing.Sha256File(full) != sha)
                    throw new InvalidInputException(full, "sha256", $"shard {spec}'s transcript is missing or differs from the SHA-256 {sha} that {merged} names");
                return full;
            }
        throw new InvalidInputException(merged, "steps", $"names no SHARD step for shard {spec}");
    }

    static Dictionary<string, RecordedVerdict> ReadVerdicts(string dir)
    {
        if (!Directory.Exists(dir)) throw new InvalidInputException(dir, "--shard-verdicts", "is not a directory");
        var all = new Dictionary<string, RecordedVerdict>();
        foreach (var f in Directory.EnumerateFiles(dir, "*.json").Order(StringComparer.Ordinal))
        {
            var v = RecordedVerdict.Parse(f, File.ReadAllText(f));
            if (v.Accepted) all[v.TranscriptSha256] = v;
        }
        return all;
    }

    public static long Record(Verifier.Store.VerifierStore store, Verdict v, string path) =>
        store.RecordCheck(new Verifier.Store.CheckRecord(v.TranscriptSha256 ?? Hashing.Sha256File(path), v.Accepted, v.Reason, v.Step, v.Lemma, v.Claimed, v.Certified,
            TranscriptChecker.Version, v.Seconds, v.Errors, v.Positions, v.AccuracyLb));

    public static void Print(CommandContext ctx, Verdict v, string path, Verifier.Store.AuditHead? head = null)
    {
        if (ctx.Json)
        {
            ctx.WriteJson(StoreOptions.WithHead(new
            {
                Verdict = v.Accepted ? "accepted" : "rejected", v.Reason, v.Step, v.Lemma, v.Claimed, v.Certified, v.B0, v.Errors, v.AccuracyLb, v.Strategy,
                v.StepsChecked, v.CheckerFlops, v.Seconds, Transcript = path, CheckerVersion = TranscriptChecker.Version,
            }, head));
            return;
        }
        ctx.Say(v.Summary);
        if (!v.Accepted && v.Claimed is { } c && v.Certified is { } k) ctx.Say($"  claimed {c:R}, certified {k:R}");
        ctx.Say($"  {v.StepsChecked} steps replayed in {v.Seconds:F2} s ({v.CheckerFlops:N0} FLOPs recomputed)");
        if (!v.Accepted) ctx.Warn($"error: {path}: rejected");
    }
}
