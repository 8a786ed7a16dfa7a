using System.Security.Cryptography;
using System.Text;
using Parquet;
using Parquet.Schema;
using Verifier.Core;
using Verifier.Text;

namespace Verifier.Text.Tests;

public sealed class TextTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), $"verifier-text-{Guid.NewGuid():N}");
    public TextTests() => Directory.CreateDirectory(_dir);
    public void Dispose() => Directory.Delete(_dir, recursive: true);
    string P(string name) => Path.Combine(_dir, name);

    static readonly TextTokenizer Gpt2 = TextTokenizer.Open("gpt2");

    /// <summary>A source of given pieces (each a document), for layouts worked out by hand.</summary>
    sealed class Pieces(params string[] docs) : TextSource("mem")
    {
        public override long Length => docs.Length;
        public override long Position => Documents;
        public override IEnumerable<TextPiece> Read(CancellationToken ct = default)
        {
            foreach (var d in docs) { Documents++; yield return new TextPiece(d, true); }
        }
    }

    static List<(int[] T, int[] L)> Windows(TextSource s, TextWindowOptions o)
    {
        var r = new List<(int[], int[])>();
        TextDataset.Stream(s, Gpt2, o, (t, l) => r.Add((t.ToArray(), l.ToArray())), null, null, default);
        return r;
    }

    [Fact]
    public void Gpt2_encodes_known_strings_to_known_ids()
    {
        // GPT-2's encoder.json: "Hello" = 15496, "Ġworld" (" world") = 995, "<|endoftext|>" = 50256, vocab_size 50257.
        Assert.Equal([15496, 995], Gpt2.Encode("Hello world"));
        Assert.Equal(50257, Gpt2.DVocab);
        Assert.Equal(50256, Gpt2.BosId);
        Assert.Equal([50256], Gpt2.Encode("<|endoftext|>"));
        // " the" is GPT-2's most frequent word token, 262; "\n\n" at the end of a text is 628.
        Assert.Equal([262], Gpt2.Encode(" the"));
        Assert.Equal([628], Gpt2.Encode("\n\n"));
        const string s = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.";
        Assert.Equal(s, Gpt2.Decode(Gpt2.Encode(s)));
        Assert.All(Gpt2.Encode("héllo wörld ✓ 日本語"), id => Assert.InRange(id, 0, Gpt2.DVocab - 1));
    }

    [Fact]
    public void A_txt_file_streamed_in_small_blocks_tokenizes_as_the_whole_file()
    {
        var sb = new StringBuilder();
        var rng = new Random(7);
        string[] words = ["the", "king", "'s", "  ", "\n", "\n\n", "\t", "Hark!", "1234", "—", "naïve", "  \n  ", "'ll", "x"];
        for (int i = 0; i < 5000; i++) sb.Append(words[rng.Next(words.Length)]).Append(rng.Next(3) == 0 ? "" : " ");
        string text = sb.ToString();
        File.WriteAllText(P("a.txt"), text);
        var src = new PlainTextSource(P("a.txt")) { BlockChars = 97 };
        var streamed = new List<int>();
        int pieces = 0;
        foreach (var p in src.Read()) { Gpt2.Encode(p.Text, streamed); pieces++; }
        Assert.True(pieces > 50);
        Assert.Equal(Gpt2.Encode(text), streamed);
    }

    [Fact]
    public void A_txt_run_without_white_space_is_cut_at_the_carry_limit_between_whole_characters()
    {
        string text = string.Concat(Enumerable.Repeat("ab😀", 40));   // no white space at all; surrogate pairs
        File.WriteAllText(P("w.txt"), text);
        var pieces = new PlainTextSource(P("w.txt")) { BlockChars = 8, MaxCarry = 16 }.Read().Select(p => p.Text).ToList();
        Assert.True(pieces.Count > 3);
        Assert.Equal(text, string.Concat(pieces));
        Assert.All(pieces, p => { Assert.False(char.IsHighSurrogate(p[^1])); Assert.False(char.IsLowSurrogate(p[0])); });
    }

    [Fact]
    public void Count_stops_reading_once_the_windows_are_written()
    {
        // Line 3 is broken, but two windows of n_ctx 2 (and the label after them) are complete before it is read.
        File.WriteAllLines(P("c.jsonl"), ["{\"text\":\"one two three four five six\"}", "{\"text\":\"seven\"}", "{broken"]);
        var w = Windows(TextSource.Open(P("c.jsonl"), null), new TextWindowOptions(2, Bos: false, MaxWindows: 2));
        Assert.Equal(2, w.Count);
        Assert.Throws<InvalidInputException>(() => Windows(TextSource.Open(P("c.jsonl"), null), new TextWindowOptions(2, Bos: false)));
    }

    [Fact]
    public void The_shipped_sample_text_has_the_hash_and_size_its_readme_states_and_tokenizes()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "data", "shakespeare.txt"))) dir = dir.Parent;
        Assert.NotNull(dir);
        string path = Path.Combine(dir!.FullName, "data", "shakespeare.txt");
        byte[] bytes = File.ReadAllBytes(path);
        string readme = File.ReadAllText(Path.Combine(dir.FullName, "data", "README.md"));
        Assert.Contains(Convert.ToHexStringLower(SHA256.HashData(bytes)), readme);
        Assert.Contains($"{bytes.Length:N0} bytes".Replace(',', ' '), readme);   // "287 963 bytes"
        Assert.DoesNotContain((byte)'\r', bytes);
        var r = TextDataset.Build(TextSource.Open(path, null), Gpt2, new TextWindowOptions(128), P("s.jsonl"));
        Assert.True(r.Windows > 500, $"{r.Windows} windows");
        Assert.StartsWith("First Citizen:", Gpt2.Decode(TokenDataset.Load(P("s.jsonl")).Sequences[0].Tokens.Skip(1)));
    }

    [Fact]
    public void Bos_starts_every_window_and_labels_are_the_next_stream_token()
    {
        var s = Gpt2.Encode("one two three four five six seven").ToArray();   // 7 tokens
        Assert.Equal(7, s.Length);
        int B = 50256;
        var w = Windows(new Pieces("one two three four five six seven"), new TextWindowOptions(4));
        // content 3 per window, stride 3: [B s0 s1 s2] → [s0 s1 s2 s3], [B s3 s4 s5] → [s3 s4 s5 s6]; s6 alone makes no window.
        Assert.Equal(2, w.Count);
        Assert.Equal([B, s[0], s[1], s[2]], w[0].T); Assert.Equal([s[0], s[1], s[2], s[3]], w[0].L);
        Assert.Equal([B, s[3], s[4], s[5]], w[1].T); Assert.Equal([s[3], s[4], s[5], s[6]], w[1].L);
    }

    [Fact]
    public void Without_bos_windows_tile_the_stream_and_the_last_label_at_the_end_is_unscored()
    {
        var s = Gpt2.Encode("one two three four five six").ToArray();   // 6 tokens
        var w = Windows(new Pieces("one two three four five six"), new TextWindowOptions(3, Bos: false));
        Assert.Equal(2, w.Count);
        Assert.Equal([s[0], s[1], s[2]], w[0].T); Assert.Equal([s[1], s[2], s[3]], w[0].L);
        Assert.Equal([s[3], s[4], s[5]], w[1].T); Assert.Equal([s[4], s[5], -1], w[1].L);
    }

    [Fact]
    public void Stride_overlaps_or_skips_windows()
    {
        var s = Gpt2.Encode("one two three four five six seven").ToArray();
        var over = Windows(new Pieces("one two three four five six seven"), new TextWindowOptions(3, Bos: false, Stride: 2));
        Assert.Equal(3, over.Count);   // starts 0, 2, 4 (4: s4 s5 s6, last label −1)
        Assert.Equal([s[2], s[3], s[4]], over[1].T); Assert.Equal([s[3], s[4], s[5]], over[1].L);
        Assert.Equal([s[4], s[5], s[6]], over[2].T); Assert.Equal([s[5], s[6], -1], over[2].L);
        var gap = Windows(new Pieces("one two three four five six seven"), new TextWindowOptions(2, Bos: false, Stride: 4));
        Assert.Equal(2, gap.Count);    // starts 0 and 4
        Assert.Equal([s[4], s[5]], gap[1].T); Assert.Equal([s[5], s[6]], gap[1].L);
        var few = Windows(new Pieces("one two three four five six seven"), new TextWindowOptions(2, Bos: false, MaxWindows: 2));
        Assert.Equal(2, few.Count);
        Assert.Equal([s[2], s[3]], few[1].T); Assert.Equal([s[3], s[4]], few[1].L);
    }

    [Fact]
    public void Documents_are_joined_with_the_eos_id_as_transformer_lens_does()
    {
        File.WriteAllLines(P("d.jsonl"), ["{\"text\":\"Hello world\",\"id\":1}", "", "{\"id\":2,\"text\":\" the\"}"]);
        var w = Windows(TextSource.Open(P("d.jsonl"), null), new TextWindowOptions(4, Bos: false));
        Assert.Single(w);
        Assert.Equal([15496, 995, 50256, 262], w[0].T);
        Assert.Equal([995, 50256, 262, -1], w[0].L);
    }

    static async Task WriteParquet(string path, params (DataField Field, Array Values)[][] groups)
    {
        var schema = new ParquetSchema(groups[0].Select(c => (Field)c.Field).ToArray());
        using var fs = File.Create(path);
        await using var writer = await ParquetWriter.CreateAsync(schema, fs);
        foreach (var g in groups)
        {
            using var rg = writer.CreateRowGroup();
            foreach (var (f, v) in g)
            {
                if (v is string[] s) await rg.WriteAsync(f, s, null);
                else await rg.WriteAsync<int>(f, ((int[])v).AsMemory(), null, null, default);
            }
        }
    }

    [Fact]
    public async Task Parquet_rows_are_documents_read_one_row_group_at_a_time()
    {
        var text = new DataField<string>("body"); var n = new DataField<int>("n");
        await WriteParquet(P("d.parquet"),
            [(text, new[] { "Hello world", " the" }), (n, new[] { 1, 2 })],
            [(text, new[] { "Hello" }), (n, new[] { 3 })]);
        var src = TextSource.Open(P("d.parquet"), "body");
        var w = Windows(src, new TextWindowOptions(6, Bos: false));
        Assert.Single(w);
        Assert.Equal([15496, 995, 50256, 262, 50256, 15496], w[0].T);
        Assert.Equal(3, src.Documents);

        var missing = Assert.Throws<InvalidInputException>(() => Windows(TextSource.Open(P("d.parquet"), null), new TextWindowOptions(2)));
        Assert.Contains(P("d.parquet"), missing.Message); Assert.Contains("column 'text'", missing.Message); Assert.Contains("'body'", missing.Message);
        var wrongType = Assert.Throws<InvalidInputException>(() => Windows(TextSource.Open(P("d.parquet"), "n"), new TextWindowOptions(2)));
        Assert.Contains("column 'n'", wrongType.Message); Assert.Contains("expected a string column", wrongType.Message);
        File.WriteAllText(P("bad.parquet"), "not parquet at all");
        var bad = Assert.Throws<InvalidInputException>(() => Windows(TextSource.Open(P("bad.parquet"), null), new TextWindowOptions(2)));
        Assert.Contains("not a Parquet file", bad.Message);
    }

    [Fact]
    public async Task A_null_parquet_value_is_refused_naming_its_row()
    {
        var text = new DataField<string>("text", true);
        await WriteParquet(P("n.parquet"), [(text, new[] { "Hello world", null!, "x" })]);
        var e = Assert.Throws<InvalidInputException>(() => Windows(TextSource.Open(P("n.parquet"), null), new TextWindowOptions(2, Bos: false)));
        Assert.Contains(P("n.parquet"), e.Message); Assert.Contains("row 2, column 'text': is null", e.Message);
    }

    [Theory]
    [InlineData("{\"text\":\"a b c\"}\n{\"text\": oops}\n", "line 2", "not valid JSON")]
    [InlineData("{\"text\":\"a b c\"}\n\n{\"body\":\"x\"}\n", "line 3, field 'text'", "missing")]
    [InlineData("{\"text\":17}\n", "line 1, field 'text'", "expected a string, got a number")]
    [InlineData("[\"text\"]\n", "line 1", "expected a JSON object")]
    [InlineData("\n\n", "documents", "no JSON lines")]
    [InlineData("{\"text\":\"a\",\"text\":\"b\"}\n", "line 1", "duplicate key 'text'")]
    [InlineData("{\"text\":\"a\"} {\"text\":\"b\"}\n", "line 1", "content after the end")]
    public void Jsonl_errors_name_the_file_the_line_and_the_field(string content, string where, string what)
    {
        File.WriteAllText(P("e.jsonl"), content);
        var e = Assert.Throws<InvalidInputException>(() => Windows(TextSource.Open(P("e.jsonl"), null), new TextWindowOptions(2, Bos: false)));
        Assert.StartsWith(P("e.jsonl") + ": ", e.Message);
        Assert.Contains(where, e.Message); Assert.Contains(what, e.Message);
    }

    [Fact]
    public void Empty_or_too_short_text_and_unknown_formats_are_refused_by_name()
    {
        File.WriteAllText(P("empty.txt"), "");
        var e = Assert.Throws<InvalidInputException>(() => Windows(TextSource.Open(P("empty.txt"), null), new TextWindowOptions(4)));
        Assert.Contains(P("empty.txt"), e.Message); Assert.Contains("is empty", e.Message);
        File.WriteAllText(P("short.txt"), "Hello world");
        var s = Assert.Throws<InvalidInputException>(() => Windows(TextSource.Open(P("short.txt"), null), new TextWindowOptions(8)));
        Assert.Contains("yields 2 tokens", s.Message); Assert.Contains("needs 7", s.Message);
        File.WriteAllText(P("x.csv"), "a");
        Assert.Contains("'.csv' is not a known text format", Assert.Throws<InvalidInputException>(() => TextSource.Open(P("x.csv"), null)).Message);
        Assert.Throws<UsageException>(() => TextSource.Open(P("short.txt"), "text"));
        Assert.Contains("does not exist", Assert.Throws<InvalidInputException>(() => TextSource.Open(P("nope.txt"), null)).Message);
    }

    [Fact]
    public void A_tokenizer_directory_needs_vocab_and_merges_and_tokenizer_json_is_refused_by_name()
    {
        Directory.CreateDirectory(P("tj"));
        File.WriteAllText(P("tj/tokenizer.json"), "{}");
        var e = Assert.Throws<InvalidInputException>(() => TextTokenizer.Open(P("tj")));
        Assert.Contains("tokenizer.json is not supported", e.Message);
        Directory.CreateDirectory(P("half"));
        File.WriteAllText(P("half/vocab.json"), "{}");
        Assert.Contains("missing merges.txt", Assert.Throws<InvalidInputException>(() => TextTokenizer.Open(P("half"))).Message);
        Assert.Throws<UsageException>(() => TextTokenizer.Open(P("nothing-here")));
    }

    [Fact]
    public void A_vocab_and_merges_directory_is_a_byte_level_bpe()
    {
        // A toy GPT-2-style vocabulary: bytes a, b, c, Ġ (space), the merges "a b" and "Ġ c", and <|endoftext|>.
        Directory.CreateDirectory(P("toy"));
        File.WriteAllText(P("toy/vocab.json"), "{\"a\":0,\"b\":1,\"c\":2,\"\u0120\":3,\"ab\":4,\"\u0120c\":5,\"<|endoftext|>\":6}");
        File.WriteAllText(P("toy/merges.txt"), "#version: 0.2\na b\n\u0120 c\n");
        var t = TextTokenizer.Open(P("toy"));
        Assert.Equal(7, t.DVocab); Assert.Equal(6, t.BosId);
        Assert.Equal([4, 5, 0], t.Encode("ab ca"));
    }

    [Fact]
    public void Vocab_top_keeps_bos_then_the_most_frequent_ids_ties_to_the_smaller_id()
    {
        var counts = new long[10];
        counts[3] = 5; counts[7] = 5; counts[1] = 9; counts[9] = 1; counts[2] = 5;
        var m = VocabMap.Top(counts, 4, bos: 9);
        Assert.Equal([9, 1, 2], m.Original);   // BOS, then 1 (9), then the tie 2/3/7 at 5 → 2
        Assert.Equal(3, m.UnkId);
        Assert.Equal(0, m.Apply(9)); Assert.Equal(1, m.Apply(1)); Assert.Equal(2, m.Apply(2)); Assert.Equal(3, m.Apply(3)); Assert.Equal(3, m.Apply(7));
        Assert.Equal([1, 2, 3], VocabMap.Top(counts, 4, null).Original);
    }

    string Build(string name, TextWindowOptions o, string input = "a.txt")
    {
        var r = TextDataset.Build(TextSource.Open(P(input), null), Gpt2, o, P(name));
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(P(name)))), r.ContentHash);
        Assert.Equal(TokenDataset.Load(P(name)).ContentHash(), r.ContentHash);
        return r.ContentHash;
    }

    const string Verse = "Shall I compare thee to a summer's day?\nThou art more lovely and more temperate:\nRough winds do shake the darling buds of May,\nAnd summer's lease hath all too short a date;\n";

    [Fact]
    public void Same_inputs_give_the_same_dataset_and_the_file_is_its_canonical_form()
    {
        File.WriteAllText(P("a.txt"), string.Concat(Enumerable.Repeat(Verse, 20)));
        string h1 = Build("1.jsonl", new TextWindowOptions(16)), h2 = Build("2.jsonl", new TextWindowOptions(16));
        Assert.Equal(h1, h2);
        Assert.NotEqual(h1, Build("3.jsonl", new TextWindowOptions(16, Bos: false)));
        var d = TokenDataset.Load(P("1.jsonl"));
        Assert.All(d.Sequences, s => { Assert.Equal(16, s.Tokens.Length); Assert.Equal(50256, s.Tokens[0]); });
        Assert.Throws<OutputExistsException>(() => TextDataset.Build(TextSource.Open(P("a.txt"), null), Gpt2, new TextWindowOptions(16), P("1.jsonl")));
    }

    [Fact]
    public void Vocab_top_writes_a_deterministic_mapping_beside_the_dataset()
    {
        File.WriteAllText(P("a.txt"), string.Concat(Enumerable.Repeat(Verse, 20)));
        var o = new TextWindowOptions(16, VocabTop: 12);
        var r = TextDataset.Build(TextSource.Open(P("a.txt"), null), Gpt2, o, P("v1.jsonl"));
        TextDataset.Build(TextSource.Open(P("a.txt"), null), Gpt2, o, P("v2.jsonl"));
        Assert.Equal(File.ReadAllBytes(P("v1.jsonl")), File.ReadAllBytes(P("v2.jsonl")));
        Assert.Equal(File.ReadAllText(P("v1.jsonl.vocab.json")), File.ReadAllText(P("v2.jsonl.vocab.json")));
        Assert.Equal(12, r.DVocab); Assert.Equal(11, r.UnkId); Assert.Equal(P("v1.jsonl.vocab.json"), r.VocabMap);
        var d = TokenDataset.Load(P("v1.jsonl"));
        Assert.All(d.Sequences, s => { Assert.Equal(0, s.Tokens[0]); Assert.All(s.Tokens, t => Assert.InRange(t, 0, 11)); });
        using var map = System.Text.Json.JsonDocument.Parse(File.ReadAllText(P("v1.jsonl.vocab.json")));
        Assert.Equal("gpt2", map.RootElement.GetProperty("tokenizer").GetString());
        Assert.Equal(0, map.RootElement.GetProperty("map").GetProperty("50256").GetInt32());
        Assert.Equal(11, map.RootElement.GetProperty("map").EnumerateObject().Count());
        // The same windows without remapping, mapped by the file, give the remapped dataset.
        var raw = TextDataset.Build(TextSource.Open(P("a.txt"), null), Gpt2, new TextWindowOptions(16), P("raw.jsonl"));
        var m = map.RootElement.GetProperty("map").EnumerateObject().ToDictionary(p => int.Parse(p.Name), p => p.Value.GetInt32());
        var rawD = TokenDataset.Load(P("raw.jsonl"));
        for (int i = 0; i < d.Count; i++)
            Assert.Equal(rawD.Sequences[i].Tokens.Select(t => m.GetValueOrDefault(t, 11)), d.Sequences[i].Tokens);
    }
}
