using System.CommandLine;
using Verifier.Core;
using Verifier.Text;

namespace Verifier.Cli;

static class DataCommands
{
    public static Command MakeData()
    {
        var task = new TaskOptions();
        var count = Options.Positive<int>("--count", "Number of sequences (text --tokenizer: at most this many windows, the first ones; default all)", 4096);
        var seed = Options.Seed("sampling");
        var output = new Option<FileInfo>("--out") { Description = "Output JSON Lines file (spec/dataset.md)", Required = true };
        var all = new Option<bool>("--all") { Description = "The whole input space of an enumerable task (max-of-k, modular-addition, sort) in lexicographic order: writes a small descriptor that every --data accepts, not the sequences (spec/dataset.md)" };
        var force = Options.Force();
        var json = Options.Json();
        var text = new TextOptions();
        var cmd = new Command("make-data", "Generate a labelled dataset from a built-in task, as JSON Lines (spec/dataset.md)");
        task.AddTo(cmd);
        foreach (var o in new Option[] { count, seed, all, output, force, json }) cmd.Options.Add(o);
        text.AddTo(cmd);
        cmd.SetAction((pr, ct) => Task.FromResult(CommandRunner.Run(pr, json, ct, ctx =>
        {
            if (pr.GetValue(text.Tokenizer) is string tokenizer) return Tokenized(pr, ctx, tokenizer, task, text, count, seed, all, output, force);
            text.RefuseWithoutTokenizer(pr);
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

    /// <summary>make-data --task text --tokenizer …: a real tokenizer over a .txt/.jsonl/.parquet file, windows in stream
    /// order (spec/dataset.md, "Text datasets").</summary>
    static int Tokenized(ParseResult pr, CommandContext ctx, string tokenizerSpec, TaskOptions task, TextOptions text,
        Option<int> count, Option<ulong> seed, Option<bool> all, Option<FileInfo> output, Option<bool> force)
    {
        if (pr.GetValue(task.Task) != "text") throw new UsageException($"--tokenizer applies only to --task text, not '{pr.GetValue(task.Task)}'");
        if (pr.GetValue(all)) throw new UsageException("--all: the task 'text' is not enumerable (its inputs are windows of a file)");
        if (pr.GetResult(seed) is { Implicit: false }) throw new UsageException("--seed does not apply with --tokenizer (windows are taken in order from the start of the text; nothing is sampled)");
        foreach (var (name, given) in new[] { ("--vocab", pr.GetValue(task.Vocab) is not null), ("--k", pr.GetValue(task.K) is not null), ("--p", pr.GetValue(task.P) is not null), ("--trigger", pr.GetValue(task.Trigger) is not null) })
            if (given) throw new UsageException($"{name} does not apply to the task 'text'");
        string input = task.TextPath(pr) ?? throw new UsageException("the task 'text' needs --text FILE (.txt, .jsonl or .parquet)");
        int nCtx = pr.GetValue(task.NCtx) ?? 32;
        if (nCtx > 1 << 16) throw new UsageException($"--n-ctx must be at most 65536, got {nCtx}");
        var options = new TextWindowOptions(nCtx, Bos: !pr.GetValue(text.NoBos), Stride: pr.GetValue(text.Stride),
            MaxWindows: pr.GetResult(count) is { Implicit: false } ? pr.GetValue(count) : int.MaxValue, VocabTop: pr.GetValue(text.VocabTop));
        options.Validate();
        string path = pr.GetValue(output)!.FullName;
        bool overwrite = pr.GetValue(force);
        OutputGuard.Check("--out", path, directory: false, [input]);
        if (File.Exists(path) && !overwrite) throw new OutputExistsException(path);
        if (options.VocabTop is not null)
        {
            string map = TextDataset.VocabMapPath(path);
            OutputGuard.Check("--out", map, directory: false, [input]);
            if (File.Exists(map) && !overwrite) throw new OutputExistsException(map);
        }
        var source = TextSource.Open(input, pr.GetValue(text.TextField));
        var tokenizer = TextTokenizer.Open(tokenizerSpec);
        var r = ctx.WithProgress($"tokenizing {Path.GetFileName(input)}", report =>
            TextDataset.Build(source, tokenizer, options, path, overwrite, new SyncProgress<(double Fraction, string Status)>(v => report(v.Fraction, v.Status)), ctx.Cancel));
        if (ctx.Json) ctx.WriteJson(new { r.Out, Task = "text", r.Source, r.Tokenizer, Sequences = r.Windows, r.LabelledPositions, r.DVocab, DVocabOut = r.DVocab, r.NCtx, r.Bos, r.BosId, r.Stride, r.Documents, r.StreamTokens, r.TokenizerDVocab, r.VocabMap, r.UnkId, r.KeptIds, Sha256 = r.ContentHash, r.ContentHash });
        else
        {
            ctx.Say($"Wrote {r.Windows:N0} windows of n_ctx {r.NCtx} ({r.LabelledPositions:N0} labelled positions) from {r.Documents:N0} document(s), {r.StreamTokens:N0} {r.Tokenizer} tokens, to {r.Out}");
            ctx.Say($"  d_vocab {r.DVocab}{(r.Bos ? $", BOS id {r.BosId}" : ", no BOS")}, stride {r.Stride}; content hash {r.ContentHash}");
            if (r.VocabMap is not null) ctx.Say($"  the {r.KeptIds} kept ids and <unk> = {r.UnkId}: {r.VocabMap}");
        }
        return ExitCodes.Ok;
    }
}

/// <summary>The options of make-data --task text --tokenizer.</summary>
sealed class TextOptions
{
    public readonly Option<string?> Tokenizer = new("--tokenizer") { Description = "text: a real tokenizer instead of characters: 'gpt2' (GPT-2 BPE, d_vocab 50257) or a model directory with vocab.json and merges.txt; --text may then be .txt, .jsonl or .parquet" };
    public readonly Option<bool> NoBos = new("--no-bos") { Description = "With --tokenizer: do not prepend the BOS id (<|endoftext|>) to each window (TransformerLens prepends it by default)" };
    public readonly Option<int?> Stride = new("--stride") { Description = "With --tokenizer: stream tokens between the starts of consecutive windows (default: n_ctx - 1 with BOS, n_ctx without: no overlap)" };
    public readonly Option<string?> TextField = new("--text-field") { Description = "With --tokenizer: the JSON field (.jsonl) or column (.parquet) holding each document's text (default: text)" };
    public readonly Option<int?> VocabTop = new("--vocab-top") { Description = "With --tokenizer: keep the N-1 most frequent ids (BOS first) and map the rest to <unk> = N-1; writes <out>.vocab.json" };

    public void AddTo(Command c)
    {
        foreach (var o in new Option[] { Tokenizer, NoBos, Stride, TextField, VocabTop }) c.Options.Add(o);
    }

    public void RefuseWithoutTokenizer(ParseResult pr)
    {
        foreach (var (o, given) in new (Option, bool)[] { (NoBos, pr.GetValue(NoBos)), (Stride, pr.GetValue(Stride) is not null), (TextField, pr.GetValue(TextField) is not null), (VocabTop, pr.GetValue(VocabTop) is not null) })
            if (given) throw new UsageException($"{o.Name} applies only with --tokenizer (make-data --task text --tokenizer gpt2|DIR)");
    }
}
