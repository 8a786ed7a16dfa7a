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
        var json = Options.Json();
        var cmd = new Command("check", "Replay a transcript in sound interval arithmetic with the independent checker: accepted, or the first step it cannot certify (exit 7)");
        cmd.Arguments.Add(transcript);
        foreach (var o in new Option[] { model, crosscoder, data, db, noRecord, json }) cmd.Options.Add(o);
        cmd.SetAction((pr, ct) => Task.FromResult(CommandRunner.Run(pr, json, ct, ctx =>
        {
            string path = pr.GetValue(transcript)!.FullName;
            long size = File.Exists(path) ? new FileInfo(path).Length : 1;
            var v = ctx.WithProgress("checking", report => TranscriptChecker.Check(path, pr.GetValue(model)!.FullName, pr.GetValue(crosscoder)?.FullName,
                pr.GetValue(data)!.FullName, new SyncProgress<long>(b => report((double)b / Math.Max(1, size), $"{b / 1024} KiB read"))));
            if (!pr.GetValue(noRecord))
            {
                using var store = new Verifier.Store.VerifierStore(pr.GetValue(db)!.FullName);
                Record(store, v, path);
            }
            Print(ctx, v, path);
            return v.Accepted ? ExitCodes.Ok : ExitCodes.Rejected;
        })));
        return cmd;
    }

    public static long Record(Verifier.Store.VerifierStore store, Verdict v, string path) =>
        store.RecordCheck(new Verifier.Store.CheckRecord(Hashing.Sha256File(path), v.Accepted, v.Reason, v.Step, v.Lemma, v.Claimed, v.Certified,
            TranscriptChecker.Version, v.Seconds));

    public static void Print(CommandContext ctx, Verdict v, string path)
    {
        if (ctx.Json)
        {
            ctx.WriteJson(new
            {
                Verdict = v.Accepted ? "accepted" : "rejected", v.Reason, v.Step, v.Lemma, v.Claimed, v.Certified, v.B0, v.Strategy,
                v.StepsChecked, v.CheckerFlops, v.Seconds, Transcript = path, CheckerVersion = TranscriptChecker.Version,
            });
            return;
        }
        ctx.Say(v.Summary);
        if (!v.Accepted && v.Claimed is { } c && v.Certified is { } k) ctx.Say($"  claimed {c:R}, certified {k:R}");
        ctx.Say($"  {v.StepsChecked} steps replayed in {v.Seconds:F2} s ({v.CheckerFlops:N0} FLOPs recomputed)");
        if (!v.Accepted) ctx.Warn($"error: {path}: rejected");
    }
}
