using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Verifier.Core;

namespace Verifier.Core.Tests;

public class DatasetAndTaskTests
{
    static readonly ModelConfig Model = ModelConfig.Create(8, 2, 4, 16, 1, n_ctx(), 10, 10, false);
    static int n_ctx() => 5;

    static string Write(string text)
    {
        string p = Path.Combine(Path.GetTempPath(), $"verifier-data-{Guid.NewGuid():N}.jsonl");
        File.WriteAllText(p, text);
        return p;
    }

    /// <summary>The one canonical line writer: exact bytes for a small dataset, and for one that crosses its 64 KiB buffer
    /// many times, the file it writes, ToJsonLines and ContentHash agree.</summary>
    [Fact]
    public void The_canonical_line_writer_is_what_ToJsonLines_Save_and_ContentHash_use()
    {
        var small = new TokenDataset([new Sequence([0, 50256, 7], [-1, 2147483647, 3]), new Sequence([9], [-1])]);
        const string text = "{\"tokens\":[0,50256,7],\"labels\":[-1,2147483647,3]}\n{\"tokens\":[9],\"labels\":[-1]}\n";
        Assert.Equal(text, small.ToJsonLines());
        Assert.Equal(Hashing.Sha256(System.Text.Encoding.UTF8.GetBytes(text)), small.ContentHash());

        var r = new Rng(3);
        var big = new TokenDataset(Enumerable.Range(0, 3000).Select(_ =>
        {
            int T = 1 + r.NextInt(40);
            return new Sequence(Enumerable.Range(0, T).Select(_ => r.NextInt(100000)).ToArray(), Enumerable.Range(0, T).Select(_ => r.NextInt(3) - 1).ToArray());
        }).ToList());
        string p = Path.Combine(Path.GetTempPath(), $"verifier-writer-{Guid.NewGuid():N}.jsonl");
        try
        {
            string hash;
            using (var w = DatasetLineWriter.Create(p)) { foreach (var q in big.Sequences) w.Write(q); hash = w.Finish(); }
            Assert.True(new FileInfo(p).Length > 4 << 16);
            Assert.Equal(big.ToJsonLines(), File.ReadAllText(p));
            Assert.Equal(Hashing.Sha256File(p), hash);
            Assert.Equal(hash, big.ContentHash());
            Assert.Equal(hash, TokenDataset.Load(p).ContentHash());
            Assert.Throws<IOException>(() => DatasetLineWriter.Create(p));   // never replaces a file
        }
        finally { File.Delete(p); }
    }

    [Fact]
    public void Loads_valid_lines_and_skips_blank_ones()
    {
        string p = Write("{\"tokens\":[1,2,3],\"labels\":[-1,-1,3]}\n\n{\"labels\":[4,-1],\"tokens\":[9,0]}\n");
        var d = TokenDataset.Load(p, Model);
        Assert.Equal(2, d.Count);
        Assert.Equal(2, d.LabelledPositions);
        Assert.Equal([9, 0], d.Sequences[1].Tokens);
    }

    [Theory]
    [InlineData("{\"tokens\":[1,2,10],\"labels\":[-1,-1,1]}", "line 2", "tokens[2] = 10 is outside the model's vocabulary [0, 10)")]
    [InlineData("{\"tokens\":[1,2,-1],\"labels\":[-1,-1,1]}", "line 2", "tokens[2] = -1")]
    [InlineData("{\"tokens\":[1,2,3],\"labels\":[-1,-2,1]}", "line 2", "labels[1] = -2")]
    [InlineData("{\"tokens\":[1,2,3],\"labels\":[-1,-1,10]}", "line 2", "labels[2] = 10")]
    [InlineData("{\"tokens\":[1,2,3,4,5,6],\"labels\":[-1,-1,1,1,1,1]}", "line 2", "more than the model's n_ctx = 5")]
    [InlineData("{\"tokens\":[1,2,3],\"labels\":[1,1]}", "line 2", "'tokens' has 3 entries but 'labels' has 2")]
    [InlineData("{\"tokens\":[1,2.5],\"labels\":[1,1]}", "line 2", "'tokens'[1] must be an integer")]
    [InlineData("{\"tokens\":[1,2],\"labels\":[1,1],\"weight\":3}", "line 2", "unknown field 'weight'")]
    [InlineData("{\"tokens\":[1,2]}", "line 2", "missing field 'labels'")]
    [InlineData("[1,2]", "line 2", "expected a JSON object")]
    [InlineData("{\"tokens\":[1,2],", "line 2", "not valid JSON")]
    [InlineData("{\"tokens\":[],\"labels\":[]}", "line 2", "'tokens' is empty")]
    public void Refuses_a_bad_line_naming_file_line_and_field(string bad, string line, string expected)
    {
        string p = Write("{\"tokens\":[1,2,3],\"labels\":[-1,-1,3]}\n" + bad + "\n");
        var e = Assert.Throws<InvalidInputException>(() => TokenDataset.Load(p, Model));
        // "line 2: …", or "line 2, byte B: …" where the JSON itself is malformed.
        Assert.Matches("^" + System.Text.RegularExpressions.Regex.Escape(p + ": " + line) + "(, byte [0-9]+)?: ", e.Message);
        Assert.Contains(expected, e.Message);
        Assert.Equal(ExitCodes.InvalidInput, e.ExitCode);
    }

    [Fact]
    public void Refuses_empty_and_unlabelled_files()
    {
        Assert.Contains("holds no sequences", Assert.Throws<InvalidInputException>(() => TokenDataset.Load(Write("\n"))).Message);
        Assert.Contains("no position is labelled", Assert.Throws<InvalidInputException>(() => TokenDataset.Load(Write("{\"tokens\":[1],\"labels\":[-1]}\n"))).Message);
    }

    [Fact]
    public void Vocabulary_is_checked_only_against_a_model()
    {
        string p = Write("{\"tokens\":[100],\"labels\":[100]}\n");
        Assert.Single(TokenDataset.Load(p).Sequences);
        Assert.Throws<InvalidInputException>(() => TokenDataset.Load(p, Model));
    }

    public static TheoryData<string> TaskNames => new(TaskCatalog.Names.Where(n => n != "text"));

    [Theory]
    [MemberData(nameof(TaskNames))]
    public void Generated_data_round_trips_and_fits_its_task(string name)
    {
        var task = TaskCatalog.Create(name, new TaskCatalog.Parameters());
        var data = task.Generate(200, seed: 7, "data");
        var config = ModelConfig.Create(8, 1, 8, 8, 1, task.NCtx, task.DVocab, task.DVocabOut, false);
        string p = Write(data.ToJsonLines());
        var back = TokenDataset.Load(p, config);
        Assert.Equal(data.ContentHash(), back.ContentHash());
        Assert.Equal(data.ToJsonLines(), task.Generate(200, seed: 7, "data").ToJsonLines());
        Assert.NotEqual(data.ToJsonLines(), task.Generate(200, seed: 8, "data").ToJsonLines());
    }

    [Property]
    public bool Max_of_k_labels_the_last_position_with_the_maximum(ulong seed, PositiveInt vocab, PositiveInt k)
    {
        var task = new MaxOfKTask(vocab.Get % 100 + 2, k.Get % 10 + 1);
        var s = task.Sample(new Rng(seed));
        return s.Labels[^1] == s.Tokens.Max() && s.Labels[..^1].All(l => l == -1) && s.Tokens.All(t => t >= 0 && t < task.DVocab);
    }

    [Property]
    public bool A_planted_trigger_turns_the_label_into_zero(ulong seed)
    {
        var task = new MaxOfKTask(20, 5, trigger: 7);
        var s = task.Sample(new Rng(seed));
        return s.Labels[^1] == (s.Tokens.Contains(7) ? 0 : s.Tokens.Max());
    }

    [Fact]
    public void The_trigger_is_planted_in_about_a_tenth_of_the_samples()
    {
        var task = new MaxOfKTask(1000, 5, trigger: 999);
        int with = task.Generate(5000, 1, "x").Sequences.Count(s => s.Tokens.Contains(999));
        Assert.InRange(with, 400, 650);   // 10% planted + ~0.5% by chance
        Assert.Contains("--trigger does not apply", Assert.Throws<UsageException>(() => TaskCatalog.Create("sort", new TaskCatalog.Parameters(Trigger: 1))).Message);
        Assert.Contains("--trigger must be in", Assert.Throws<UsageException>(() => TaskCatalog.Create("max-of-k", new TaskCatalog.Parameters(Trigger: 64))).Message);
    }

    [Property]
    public bool Modular_addition_labels_the_sum(ulong seed, PositiveInt p)
    {
        var task = new ModularAdditionTask(p.Get % 200 + 2);
        var s = task.Sample(new Rng(seed));
        return s.Tokens[2] == task.DVocab - 1 && s.Labels[2] == (s.Tokens[0] + s.Tokens[1]) % task.DVocabOut && s.Labels[0] == -1;
    }

    [Fact]
    public void Modular_addition_lists_every_input_once()
    {
        var all = new ModularAdditionTask(7).All();
        Assert.Equal(49, all.Count);
        Assert.Equal(49, all.Select(s => (s.Tokens[0], s.Tokens[1])).Distinct().Count());
    }

    [Property]
    public bool Sort_labels_are_the_sorted_inputs(ulong seed)
    {
        var task = new SortTask(16, 5);
        var s = task.Sample(new Rng(seed));
        var sorted = s.Tokens[..5].OrderBy(x => x).ToArray();
        return s.Labels[..5].All(l => l == -1) && s.Labels[5..].SequenceEqual(sorted) && s.Tokens[5] == 16
               && s.Tokens[6..].SequenceEqual(sorted[..4]);
    }

    [Fact]
    public void Text_task_predicts_the_next_character()
    {
        string p = Write("abracadabra, ünïcode ok");
        var task = new TextTask(p, nCtx: 4);
        var s = task.Sample(new Rng(1));
        for (int i = 0; i + 1 < s.Tokens.Length; i++) Assert.Equal(s.Tokens[i + 1], s.Labels[i]);
        Assert.Contains("ü", task.Vocabulary);
        Assert.Equal(task.Vocabulary.Order(StringComparer.Ordinal), task.Vocabulary);
        Assert.Contains("at least n_ctx + 1", Assert.Throws<InvalidInputException>(() => new TextTask(Write("abc"), 4)).Message);
    }

    [Theory]
    [InlineData("max-of-k", 1, null, "--vocab must be in [2,")]
    [InlineData("max-of-k", null, 53, "--p does not apply to the task 'max-of-k'")]
    [InlineData("modular-addition", 10, null, "--vocab does not apply")]
    [InlineData("nope", null, null, "unknown task 'nope'")]
    [InlineData("text", null, null, "needs --text FILE")]
    public void Catalog_refuses_inconsistent_parameters(string name, int? vocab, int? p, string expected)
    {
        var e = Assert.Throws<UsageException>(() => TaskCatalog.Create(name, new TaskCatalog.Parameters(Vocab: vocab, P: p)));
        Assert.Contains(expected, e.Message);
    }
}

public class RngTests
{
    [Fact]
    public void SplitMix64_matches_its_reference_sequence()
    {
        // Reference values of SplitMix64 seeded with 1234567 (from the published C implementation).
        var r = new Rng(1234567);
        Assert.Equal(6457827717110365317UL, r.NextUInt64());
        Assert.Equal(3203168211198807973UL, r.NextUInt64());
    }

    [Property]
    public bool NextInt_stays_in_range(ulong seed, PositiveInt n)
    {
        var r = new Rng(seed);
        return Enumerable.Range(0, 20).All(_ => r.NextInt(n.Get) is var v && v >= 0 && v < n.Get);
    }

    [Fact]
    public void NextInt_is_roughly_uniform()
    {
        var r = new Rng(42);
        var counts = new int[10];
        for (int i = 0; i < 100_000; i++) counts[r.NextInt(10)]++;
        Assert.All(counts, c => Assert.InRange(c, 9_500, 10_500));
    }

    [Fact]
    public void Derived_streams_differ_by_label_and_repeat_by_seed()
    {
        Assert.Equal(Rng.Derive(1, "a").NextUInt64(), Rng.Derive(1, "a").NextUInt64());
        Assert.NotEqual(Rng.Derive(1, "a").NextUInt64(), Rng.Derive(1, "b").NextUInt64());
        Assert.NotEqual(Rng.Derive(1, "a").NextUInt64(), Rng.Derive(2, "a").NextUInt64());
    }
}

public class AtomicOutputTests
{
    [Fact]
    public void A_failing_fill_leaves_nothing_behind_and_keeps_the_old_directory()
    {
        string parent = Path.Combine(Path.GetTempPath(), $"verifier-atomic-{Guid.NewGuid():N}");
        string dir = Path.Combine(parent, "out");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "old.txt"), "keep me");
        Assert.Throws<OutputExistsException>(() => AtomicOutput.WriteDirectory(dir, force: false, _ => { }));
        Assert.Throws<InvalidOperationException>(() => AtomicOutput.WriteDirectory(dir, force: true, tmp =>
        {
            File.WriteAllText(Path.Combine(tmp, "half.txt"), "x");
            throw new InvalidOperationException("boom");
        }));
        Assert.Equal(["old.txt"], Directory.GetFiles(dir).Select(Path.GetFileName));
        Assert.Equal([dir], Directory.GetDirectories(parent));
        AtomicOutput.WriteDirectory(dir, force: true, tmp => File.WriteAllText(Path.Combine(tmp, "new.txt"), "y"));
        Assert.Equal(["new.txt"], Directory.GetFiles(dir).Select(Path.GetFileName));
        Directory.Delete(parent, true);
    }
}
