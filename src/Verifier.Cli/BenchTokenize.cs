using System.CommandLine;
using System.Diagnostics;
using System.Text;
using Parquet;
using Parquet.Schema;
using Verifier.Core;
using Verifier.Text;

namespace Verifier.Cli;

/// <summary>bench tokenize: make-data --tokenizer's whole pipeline (read, tokenize, window, write the dataset) on the
/// same text as .txt, .jsonl and .parquet; MiB/s of input, tokens/s and peak memory per format.</summary>
static class BenchTokenize
{
    public sealed record FormatResult(string Format, long InputBytes, long Documents, long Tokens, int Windows, double Seconds,
        double MibPerSecond, double TokensPerSecond, double StartMemoryMib, double PeakMemoryMib, bool PeakIsPerFormat);

    public sealed record Result(string Source, string Tokenizer, long TextBytes, int NCtx, int Threads, IReadOnlyList<FormatResult> Formats);

    public static Command Build()
    {
        var text = new Option<FileInfo?>("--text") { Description = "UTF-8 text to measure on (default: --mib MiB synthesised from the Shakespeare sample built into verifier, data/shakespeare.txt)" };
        var mib = Options.Positive<int>("--mib", "Size of the synthesised text in MiB (without --text)", 100);
        var tokenizer = new Option<string>("--tokenizer") { Description = "gpt2 or a model directory with vocab.json and merges.txt", DefaultValueFactory = _ => "gpt2" };
        var nCtx = Options.Positive<int>("--n-ctx", "Window length (BOS included)", 1024);
        var formats = new Option<string[]>("--formats") { Description = "Which inputs: txt, jsonl, parquet", DefaultValueFactory = _ => ["txt", "jsonl", "parquet"], AllowMultipleArgumentsPerToken = true };
        formats.AcceptOnlyFromAmong("txt", "jsonl", "parquet");
        var seed = Options.Seed("the paragraph shuffle of the synthesised text");
        var json = Options.Json();
        var cmd = new Command("tokenize",
            "Tokenizer throughput: make-data --task text --tokenizer on ~100 MiB of text as .txt, .jsonl and .parquet (MiB/s, tokens/s, peak memory)");
        foreach (var o in new Option[] { text, mib, tokenizer, nCtx, formats, seed, json }) cmd.Options.Add(o);
        cmd.SetAction((pr, ct) => Task.FromResult(CommandRunner.Run(pr, json, ct, ctx =>
        {
            if (pr.GetValue(text) is not null && pr.GetResult(mib) is { Implicit: false }) throw new UsageException("--mib applies only without --text");
            if (pr.GetValue(text) is not null && pr.GetResult(seed) is { Implicit: false }) throw new UsageException("--seed applies only without --text");
            var tok = TextTokenizer.Open(pr.GetValue(tokenizer)!);
            string dir = Path.Combine(Path.GetTempPath(), $"verifier-bench-tokenize-{Environment.ProcessId}-{Guid.NewGuid():N}");
            Directory.CreateDirectory(dir);
            try
            {
                string source, txt = Path.Combine(dir, "text.txt");
                if (pr.GetValue(text) is { } t)
                {
                    source = t.FullName;
                    if (!t.Exists) throw new InvalidInputException(source, "file", "does not exist");
                    File.Copy(source, txt);
                }
                else
                {
                    string sample;
                    using (var reader = new StreamReader(DemoLanguageModel.OpenSample(), new UTF8Encoding(false))) sample = reader.ReadToEnd();
                    long size = (long)pr.GetValue(mib) << 20;
                    ctx.WithProgress("synthesising text", report => { Synthesise(sample, DemoLanguageModel.SampleName, txt, size, pr.GetValue(seed), report); return 0; });
                    source = $"{DemoLanguageModel.SampleName} × shuffled paragraphs, seed {pr.GetValue(seed)}";
                }
                string jsonl = Path.Combine(dir, "text.jsonl"), parquet = Path.Combine(dir, "text.parquet");
                var want = pr.GetValue(formats)!.Distinct().ToArray();
                if (want.Contains("jsonl")) ctx.WithProgress("writing .jsonl", _ => { WriteJsonl(Documents(txt), jsonl); return 0; });
                if (want.Contains("parquet")) ctx.WithProgress("writing .parquet", _ => { WriteParquet(Documents(txt), parquet).GetAwaiter().GetResult(); return 0; });
                GC.Collect();
                var results = new List<FormatResult>();
                foreach (var (name, path) in new[] { ("txt", txt), ("jsonl", jsonl), ("parquet", parquet) })
                {
                    if (!want.Contains(name)) continue;
                    // Return the preparation's memory to the system first, so that the peak is this format's own.
                    GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
                    double start = BenchCommand.ResidentMiB();
                    bool reset = ResetPeak();
                    string outPath = Path.Combine(dir, $"out-{name}.jsonl");
                    var sw = Stopwatch.StartNew();
                    var r = ctx.WithProgress($"tokenizing .{name}", report =>
                        TextDataset.Build(TextSource.Open(path, null), tok, new TextWindowOptions(pr.GetValue(nCtx)), outPath, false, new SyncProgress<(double Fraction, string Status)>(v => report(v.Fraction, v.Status)), ctx.Cancel));
                    double s = sw.Elapsed.TotalSeconds;
                    long bytes = new FileInfo(path).Length;
                    results.Add(new FormatResult(name, bytes, r.Documents, r.StreamTokens, r.Windows, s, bytes / s / (1 << 20), r.StreamTokens / s,
                        start, BenchCommand.PeakMemoryMiB(), reset));
                    File.Delete(outPath);
                }
                var res = new Result(source, tok.Name, new FileInfo(txt).Length, pr.GetValue(nCtx), Environment.ProcessorCount, results);
                if (ctx.Json) ctx.WriteJson(res);
                else
                {
                    ctx.Say($"tokenizer {res.Tokenizer}, {res.TextBytes / (double)(1 << 20):F1} MiB of text ({source}), n_ctx {res.NCtx}, {res.Threads} processors; read + tokenize + window + write the dataset");
                    ctx.Say($"  {"format",-8} {"input MiB",10} {"documents",10} {"tokens",12} {"seconds",8} {"MiB/s",7} {"tokens/s",11} {"start MiB",9} {"peak MiB",9}");
                    foreach (var f in results)
                        ctx.Say($"  {f.Format,-8} {f.InputBytes / (double)(1 << 20),10:F1} {f.Documents,10:N0} {f.Tokens,12:N0} {f.Seconds,8:F1} {f.MibPerSecond,7:F2} {f.TokensPerSecond,11:N0} {f.StartMemoryMib,9:F0} {f.PeakMemoryMib,9:F0}{(f.PeakIsPerFormat ? "" : " (process peak so far)")}");
                }
                return ExitCodes.Ok;
            }
            finally
            {
                Directory.Delete(dir, recursive: true);
            }
        })));
        return cmd;
    }

    /// <summary>Resets the kernel's peak-RSS mark (VmHWM) by writing 5 to /proc/self/clear_refs (Linux ≥ 4.0), so each
    /// format's peak is its own; false where that is not possible (the peak is then the process's so far).</summary>
    static bool ResetPeak()
    {
        try { File.WriteAllText("/proc/self/clear_refs", "5"); return true; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    /// <summary>The text's paragraphs (blocks separated by a blank line), each followed by a blank line, in a fresh
    /// seeded shuffle (Fisher–Yates with <see cref="Rng"/>) per pass, passes repeated until <paramref name="size"/>
    /// bytes are written; the last paragraph is cut at a line boundary so the file is at most that size.</summary>
    static void Synthesise(string text, string source, string path, long size, ulong seed, Action<double, string> report)
    {
        var paragraphs = text.Replace("\r\n", "\n").Split("\n\n", StringSplitOptions.RemoveEmptyEntries)
            .Select(p => Encoding.UTF8.GetBytes(p.Trim('\n') + "\n\n")).Where(p => p.Length > 2).ToArray();
        if (paragraphs.Length == 0) throw new InvalidInputException(source, "text", "has no paragraphs");
        var rng = Rng.Derive(seed, "bench-tokenize");
        using var fs = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
        long written = 0;
        var order = Enumerable.Range(0, paragraphs.Length).ToArray();
        while (written < size)
        {
            for (int i = order.Length - 1; i > 0; i--) { int j = rng.NextInt(i + 1); (order[i], order[j]) = (order[j], order[i]); }
            foreach (int k in order)
            {
                var p = paragraphs[k];
                if (written + p.Length > size)
                {
                    int cut = Array.LastIndexOf(p, (byte)'\n', (int)Math.Min(p.Length - 1, size - written - 1));
                    if (cut >= 0) { fs.Write(p, 0, cut + 1); written += cut + 1; }
                    written = size;
                    break;
                }
                fs.Write(p); written += p.Length;
            }
            report((double)written / size, "");
        }
    }

    /// <summary>The synthesised text as documents of about 4 KiB (whole paragraphs), for the .jsonl and .parquet inputs.</summary>
    static IEnumerable<string> Documents(string txt)
    {
        var sb = new StringBuilder();
        foreach (var line in File.ReadLines(txt))
        {
            sb.Append(line).Append('\n');
            if (line.Length == 0 && sb.Length >= 4096) { yield return sb.ToString(); sb.Clear(); }
        }
        if (sb.Length > 0) yield return sb.ToString();
    }

    static void WriteJsonl(IEnumerable<string> docs, string path)
    {
        using var w = new StreamWriter(path, false, new UTF8Encoding(false));
        foreach (var d in docs) w.Write(System.Text.Json.JsonSerializer.Serialize(new { text = d }) + "\n");
    }

    /// <summary>Row groups of 1 000 documents (about 4 MiB of text), one column "text". Reading holds one row group.</summary>
    static async Task WriteParquet(IEnumerable<string> docs, string path)
    {
        var field = new DataField<string>("text");
        await using var fs = File.Create(path);
        await using var writer = await ParquetWriter.CreateAsync(new ParquetSchema(field), fs);
        foreach (var group in docs.Chunk(1_000))
        {
            using var rg = writer.CreateRowGroup();
            await rg.WriteAsync(field, group, null);
        }
    }
}
