using System.Text.Json;
using Verifier.Core;

namespace Verifier.Cli.Tests;

/// <summary>make-data --task text --tokenizer and bench tokenize, run as a user runs them.</summary>
public sealed class TextCliTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), $"verifier-textcli-{Guid.NewGuid():N}");
    public TextCliTests() => Directory.CreateDirectory(_dir);
    public void Dispose() => Directory.Delete(_dir, recursive: true);
    string P(string name) => Path.Combine(_dir, name);
    static (int Code, string Out, string Err) Run(params string[] args) => CliTests.Run(args);

    const string Verse = "Shall I compare thee to a summer's day?\nThou art more lovely and more temperate:\nRough winds do shake the darling buds of May,\nAnd summer's lease hath all too short a date;\n";

    [Fact]
    public void Make_data_with_gpt2_writes_bos_windows_and_reports_the_vocabulary()
    {
        File.WriteAllText(P("t.txt"), string.Concat(Enumerable.Repeat(Verse, 10)));
        var r = Run("make-data", "--task", "text", "--tokenizer", "gpt2", "--text", P("t.txt"), "--n-ctx", "16", "--count", "5", "--out", P("d.jsonl"), "--json");
        Assert.True(r.Code == 0, r.Err);
        using var j = JsonDocument.Parse(r.Out);
        Assert.Equal(5, j.RootElement.GetProperty("sequences").GetInt32());
        Assert.Equal(50257, j.RootElement.GetProperty("d_vocab").GetInt32());
        Assert.Equal(50256, j.RootElement.GetProperty("bos_id").GetInt32());
        Assert.Equal(15, j.RootElement.GetProperty("stride").GetInt32());
        var d = TokenDataset.Load(P("d.jsonl"));
        Assert.Equal(d.ContentHash(), j.RootElement.GetProperty("content_hash").GetString());
        Assert.All(d.Sequences, s => { Assert.Equal(16, s.Tokens.Length); Assert.Equal(50256, s.Tokens[0]); Assert.Equal(s.Tokens[1], s.Labels[0]); });
        Assert.Equal(d.Sequences[0].Labels[15], d.Sequences[1].Tokens[1]);   // the last label is the next window's first text token

        var again = Run("make-data", "--task", "text", "--tokenizer", "gpt2", "--text", P("t.txt"), "--n-ctx", "16", "--count", "5", "--out", P("d.jsonl"));
        Assert.Equal(ExitCodes.OutputExists, again.Code);
        Assert.Equal(0, Run("make-data", "--task", "text", "--tokenizer", "gpt2", "--text", P("t.txt"), "--n-ctx", "16", "--count", "5", "--out", P("d.jsonl"), "--force").Code);
        Assert.Equal(d.ContentHash(), TokenDataset.Load(P("d.jsonl")).ContentHash());
    }

    /// <summary>make-data --task text writes through Core's canonical line writer: the file is byte for byte what Core
    /// writes for the same sequences (TokenDataset.Save), so both hash alike; with and without --vocab-top.</summary>
    [Theory]
    [InlineData("")]
    [InlineData("--vocab-top 20")]
    public void A_text_dataset_is_byte_identical_to_Cores_serialisation_of_its_sequences(string options)
    {
        var extra = options.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        File.WriteAllText(P("t.txt"), string.Concat(Enumerable.Repeat(Verse, 3)));
        var r = Run(["make-data", "--task", "text", "--tokenizer", "gpt2", "--text", P("t.txt"), "--n-ctx", "12", "--out", P("d.jsonl"), "--json", .. extra]);
        Assert.True(r.Code == 0, r.Err);
        var d = TokenDataset.Load(P("d.jsonl"));
        new TokenDataset(d.Sequences.Select(s => new Sequence([.. s.Tokens], [.. s.Labels])).ToList()).Save(P("core.jsonl"));
        Assert.Equal(File.ReadAllBytes(P("core.jsonl")), File.ReadAllBytes(P("d.jsonl")));
        using var j = JsonDocument.Parse(r.Out);
        Assert.Equal(Hashing.Sha256File(P("core.jsonl")), j.RootElement.GetProperty("content_hash").GetString());
        Assert.Equal(Hashing.Sha256File(P("d.jsonl")), d.ContentHash());
    }

    [Fact]
    public void Options_that_do_not_apply_are_refused()
    {
        File.WriteAllText(P("t.txt"), Verse);
        foreach (var (args, message) in new (string[], string)[]
        {
            (["--task", "text", "--text", P("t.txt"), "--stride", "3"], "--stride applies only with --tokenizer"),
            (["--task", "text", "--text", P("t.txt"), "--no-bos"], "--no-bos applies only with --tokenizer"),
            (["--task", "text", "--text", P("t.txt"), "--vocab-top", "9"], "--vocab-top applies only with --tokenizer"),
            (["--task", "sort", "--tokenizer", "gpt2"], "--tokenizer applies only to --task text"),
            (["--task", "text", "--tokenizer", "gpt2", "--text", P("t.txt"), "--seed", "3"], "--seed does not apply with --tokenizer"),
            (["--task", "text", "--tokenizer", "gpt2", "--text", P("t.txt"), "--text-field", "body"], "--text-field does not apply to a .txt file"),
            (["--task", "text", "--tokenizer", "gpt2", "--text", P("t.txt"), "--vocab", "5"], "--vocab does not apply"),
            (["--task", "text", "--tokenizer", "gpt2", "--text", P("t.txt"), "--stride", "0"], "--stride must be positive"),
            (["--task", "text", "--tokenizer", "gpt2", "--text", P("t.txt"), "--n-ctx", "1"], "--n-ctx must be at least 2"),
            (["--task", "text", "--tokenizer", "gpt2", "--text", P("t.txt"), "--vocab-top", "1"], "--vocab-top must be at least 2"),
            (["--task", "text", "--tokenizer", P("no-such-dir"), "--text", P("t.txt")], "neither 'gpt2' nor an existing model directory"),
        })
        {
            var r = Run(["make-data", .. args, "--out", P("x.jsonl")]);
            Assert.True(r.Code == ExitCodes.Usage, $"{string.Join(' ', args)}: {r.Code} {r.Err}");
            Assert.Contains(message, r.Err);
            Assert.False(File.Exists(P("x.jsonl")));
        }
    }

    [Fact]
    public void Bad_input_files_exit_3_naming_the_file_line_and_field_and_write_nothing()
    {
        File.WriteAllText(P("d.jsonl"), "{\"text\":\"a b c\"}\n{\"content\":\"d e f\"}\n");
        var r = Run("make-data", "--task", "text", "--tokenizer", "gpt2", "--text", P("d.jsonl"), "--n-ctx", "2", "--out", P("x.jsonl"));
        Assert.Equal(ExitCodes.InvalidInput, r.Code);
        Assert.Contains($"{P("d.jsonl")}: line 2, field 'text': missing", r.Err);
        Assert.Empty(Directory.GetFiles(_dir, "x.jsonl*"));
        var ok = Run("make-data", "--task", "text", "--tokenizer", "gpt2", "--text", P("d.jsonl"), "--text-field", "content", "--n-ctx", "2", "--out", P("x.jsonl"));
        Assert.Equal(ExitCodes.InvalidInput, ok.Code);
        Assert.Contains("line 1, field 'content': missing", ok.Err);
        File.WriteAllText(P("e.txt"), "");
        var empty = Run("make-data", "--task", "text", "--tokenizer", "gpt2", "--text", P("e.txt"), "--out", P("x.jsonl"));
        Assert.Equal(ExitCodes.InvalidInput, empty.Code);
        Assert.Contains($"{P("e.txt")}: text: is empty", empty.Err);
    }

    [Fact]
    public void Vocab_top_writes_the_map_and_the_dataset_fits_a_model_of_that_vocabulary()
    {
        File.WriteAllText(P("t.txt"), string.Concat(Enumerable.Repeat(Verse, 10)));
        var r = Run("make-data", "--task", "text", "--tokenizer", "gpt2", "--text", P("t.txt"), "--n-ctx", "8", "--vocab-top", "10", "--out", P("d.jsonl"), "--json");
        Assert.True(r.Code == 0, r.Err);
        using var j = JsonDocument.Parse(r.Out);
        Assert.Equal(10, j.RootElement.GetProperty("d_vocab").GetInt32());
        Assert.Equal(P("d.jsonl.vocab.json"), j.RootElement.GetProperty("vocab_map").GetString());
        Assert.All(TokenDataset.Load(P("d.jsonl")).Sequences, s => Assert.All(s.Tokens, t => Assert.InRange(t, 0, 9)));
        // The map is an output too: it is not replaced without --force.
        File.Delete(P("d.jsonl"));
        var again = Run("make-data", "--task", "text", "--tokenizer", "gpt2", "--text", P("t.txt"), "--n-ctx", "8", "--vocab-top", "10", "--out", P("d.jsonl"));
        Assert.Equal(ExitCodes.OutputExists, again.Code);
        Assert.Contains("d.jsonl.vocab.json", again.Err);
    }

    [Fact]
    public void Gpt2_ids_beyond_a_small_models_vocabulary_are_refused_by_eval()
    {
        File.WriteAllText(P("t.txt"), string.Concat(Enumerable.Repeat(Verse, 4)));
        Assert.Equal(0, Run("make-data", "--task", "text", "--tokenizer", "gpt2", "--text", P("t.txt"), "--n-ctx", "3", "--out", P("d.jsonl")).Code);
        // A random model with d_vocab 10 (no training in this class, so it may run beside the training test classes).
        var c = ModelConfig.Create(8, 2, 4, 16, 1, 3, 10, 10, attnOnly: false);
        Directory.CreateDirectory(P("model"));
        ModelWeights.Random(c, 1, dtype: "F64").SaveInto(P("model"));
        var e = Run("eval", "--model", P("model"), "--data", P("d.jsonl"));
        Assert.Equal(ExitCodes.InvalidInput, e.Code);
        Assert.Contains(P("d.jsonl"), e.Err);
        Assert.Contains("outside the model's vocabulary", e.Err);
    }

    [Fact]
    public void Bench_tokenize_reports_every_format()
    {
        File.WriteAllText(P("t.txt"), string.Concat(Enumerable.Repeat(Verse + "\n", 40)));
        var r = Run("bench", "tokenize", "--text", P("t.txt"), "--n-ctx", "16", "--json");
        Assert.True(r.Code == 0, r.Err);
        using var j = JsonDocument.Parse(r.Out);
        var formats = j.RootElement.GetProperty("formats").EnumerateArray().ToArray();
        Assert.Equal(["txt", "jsonl", "parquet"], formats.Select(f => f.GetProperty("format").GetString()));
        long tokens = formats[0].GetProperty("tokens").GetInt64();
        Assert.True(tokens > 1000);
        Assert.All(formats, f => { Assert.True(f.GetProperty("tokens_per_second").GetDouble() > 0); Assert.True(f.GetProperty("peak_memory_mib").GetDouble() > 0); });
        Assert.Equal(ExitCodes.Usage, Run("bench", "tokenize", "--text", P("t.txt"), "--mib", "3").Code);
    }

    [Fact]
    public void Bench_tokenize_without_text_synthesises_from_the_embedded_sample_not_a_file_on_disk()
    {
        // The test runs inside the checkout, where data/shakespeare.txt is on disk: the source must still be the embedded copy.
        var r = Run("bench", "tokenize", "--mib", "1", "--formats", "txt", "--n-ctx", "64", "--json");
        Assert.True(r.Code == 0, r.Err);
        using var j = JsonDocument.Parse(r.Out);
        Assert.StartsWith("the Shakespeare sample built into verifier", j.RootElement.GetProperty("source").GetString());
        Assert.InRange(j.RootElement.GetProperty("text_bytes").GetInt64(), (1 << 20) - 4096, 1 << 20);   // cut at a line boundary
        Assert.True(j.RootElement.GetProperty("formats")[0].GetProperty("tokens").GetInt64() > 100_000);
    }
}
