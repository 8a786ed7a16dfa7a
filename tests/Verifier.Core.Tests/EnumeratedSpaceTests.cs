using Verifier.Core;

namespace Verifier.Core.Tests;

/// <summary>The whole input space of an enumerable task as a dataset (spec/dataset.md, "Enumerated input spaces").</summary>
public class EnumeratedSpaceTests
{
    static readonly ModelConfig Model = ModelConfig.Create(8, 2, 4, 16, 1, 3, 5, 5, false);

    static string Write(string text)
    {
        string p = Path.Combine(Path.GetTempPath(), $"verifier-space-{Guid.NewGuid():N}.json");
        File.WriteAllText(p, text);
        return p;
    }

    /// <summary>[5]^3 in lexicographic order, labelled as the max-of-k task labels a sequence: written out by hand.</summary>
    static List<Sequence> Explicit(int vocab, int k)
    {
        var task = new MaxOfKTask(vocab, k);
        var list = new List<Sequence>();
        var t = new int[k];
        void Rec(int j)
        {
            if (j == k) { var tokens = (int[])t.Clone(); list.Add(new Sequence(tokens, task.Label(tokens))); return; }
            for (int x = 0; x < vocab; x++) { t[j] = x; Rec(j + 1); }
        }
        Rec(0);
        return list;
    }

    [Fact]
    public void Virtual_list_equals_the_explicitly_generated_space()
    {
        var data = TokenDataset.Enumerated(EnumeratedSpace.Of(new MaxOfKTask(5, 3)));
        var expected = Explicit(5, 3);
        Assert.Equal(125, data.Count);
        Assert.Equal(125, data.LabelledPositions);
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.Equal(expected[i].Tokens, data.Sequences[i].Tokens);
            Assert.Equal(expected[i].Labels, data.Sequences[i].Labels);
        }
        Assert.Equal(expected.Select(s => string.Join(",", s.Tokens)), data.Sequences.Select(s => string.Join(",", s.Tokens)));
        // The explicit JSON Lines file holds the same sequences; a slice is the same part of both.
        var exp = new TokenDataset(expected);
        Assert.Equal(exp.ToJsonLines(), data.ToJsonLines());
        var part = data.Slice(40, 77);
        Assert.NotNull(part.Space);
        Assert.False(part.IsWholeSpace);
        Assert.Equal(37, part.Count);
        Assert.Equal(37, part.LabelledPositions);
        Assert.Equal(exp.Slice(40, 77).ToJsonLines(), part.ToJsonLines());
        Assert.Equal(exp.Slice(40, 77).ContentHash(), part.ContentHash());
        Assert.Equal(expected[50].Tokens, part.Slice(5, 20).Sequences[5].Tokens);
        Assert.Throws<ArgumentOutOfRangeException>(() => data.Sequences[125]);
    }

    [Fact]
    public void Other_enumerable_tasks_list_their_spaces_in_order()
    {
        var ma = TokenDataset.Enumerated(EnumeratedSpace.Of(new ModularAdditionTask(7)));
        Assert.Equal(new ModularAdditionTask(7).All().Select(s => string.Join(",", s.Tokens.Concat(s.Labels))), ma.Sequences.Select(s => string.Join(",", s.Tokens.Concat(s.Labels))));
        var sort = TokenDataset.Enumerated(EnumeratedSpace.Of(new SortTask(3, 2)));
        Assert.Equal(9, sort.Count);
        Assert.Equal(18, sort.LabelledPositions);
        Assert.Equal([2, 1, 3, 1], sort.Sequences[7].Tokens);
        Assert.Equal(new SortTask(3, 2).Label(sort.Sequences[7].Tokens), sort.Sequences[7].Labels);
    }

    [Fact]
    public void Descriptor_round_trips_and_its_hash_is_the_canonical_bytes()
    {
        var data = TokenDataset.Enumerated(EnumeratedSpace.Of(new MaxOfKTask(5, 3)));
        const string canonical = "{\"format\":\"verifier-enumerated/1\",\"task\":\"max-of-k\",\"vocab\":5,\"k\":3,\"sequences\":125}";
        Assert.Equal(canonical, data.Space!.CanonicalJson());
        // Pinned: a change of the canonical form (or of its hash) changes the name of every enumerated dataset.
        Assert.Equal(Hashing.Sha256(System.Text.Encoding.UTF8.GetBytes(canonical)), data.ContentHash());
        string p = Path.Combine(Path.GetTempPath(), $"verifier-space-{Guid.NewGuid():N}.json");
        data.Save(p);
        Assert.Equal(canonical + "\n", File.ReadAllText(p));
        var back = TokenDataset.Load(p, Model);
        Assert.True(back.IsWholeSpace);
        Assert.Equal(data.ContentHash(), back.ContentHash());
        // Formatting does not matter: the same fields, spaced, in another order, name the same dataset.
        var spaced = TokenDataset.Load(Write("\uFEFF { \"format\" : \"verifier-enumerated/1\",\n \"k\": 3, \"vocab\": 5, \"task\": \"max-of-k\", \"sequences\": 125 }\n"), Model);
        Assert.Equal(data.ContentHash(), spaced.ContentHash());
        // Another space is another dataset; the hash is not the explicit list's.
        Assert.NotEqual(data.ContentHash(), TokenDataset.Enumerated(EnumeratedSpace.Of(new MaxOfKTask(5, 2))).ContentHash());
        Assert.NotEqual(new TokenDataset(Explicit(5, 3)).ContentHash(), data.ContentHash());
        var trig = EnumeratedSpace.Of(new MaxOfKTask(5, 3, trigger: 2));
        Assert.Equal("{\"format\":\"verifier-enumerated/1\",\"task\":\"max-of-k\",\"vocab\":5,\"k\":3,\"trigger\":2,\"sequences\":125}", trig.CanonicalJson());
        Assert.Equal([-1, -1, 0], TokenDataset.Enumerated(trig).Sequences[2 * 5 + 4].Labels);   // 0,2,4: trigger present
    }

    [Theory]
    [InlineData("{\"format\":\"verifier-enumerated/1\",\"task\":\"max-of-k\",\"vocab\":5,\"k\":3,\"sequences\":125,\"seed\":1}", "unknown field 'seed'")]
    [InlineData("{\"format\":\"verifier-enumerated/1\",\"task\":\"max-of-k\",\"vocab\":5,\"vocab\":4,\"k\":3,\"sequences\":125}", "duplicate key 'vocab'")]
    [InlineData("{\"format\":\"verifier-enumerated/1\",\"task\":\"text\",\"sequences\":125}", "task 'text' is not enumerable")]
    [InlineData("{\"format\":\"verifier-enumerated/1\",\"task\":\"max-of-kk\",\"vocab\":5,\"k\":3,\"sequences\":125}", "unknown task 'max-of-kk'")]
    [InlineData("{\"format\":\"verifier-enumerated/1\",\"task\":\"modular-addition\",\"vocab\":5,\"k\":3,\"sequences\":125}", "unknown field 'vocab'")]
    [InlineData("{\"format\":\"verifier-enumerated/2\",\"task\":\"max-of-k\",\"vocab\":5,\"k\":3,\"sequences\":125}", "format 'verifier-enumerated/2' is not known")]
    [InlineData("{\"format\":\"verifier-enumerated/1\",\"task\":\"max-of-k\",\"vocab\":5,\"k\":3,\"sequences\":124}", "'sequences' = 124, but the space")]
    [InlineData("{\"format\":\"verifier-enumerated/1\",\"task\":\"max-of-k\",\"vocab\":5,\"k\":3}", "missing field 'sequences'")]
    [InlineData("{\"format\":\"verifier-enumerated/1\",\"task\":\"max-of-k\",\"vocab\":5.0,\"k\":3,\"sequences\":125}", "'vocab' must be an integer")]
    [InlineData("{\"format\":\"verifier-enumerated/1\",\"task\":\"max-of-k\",\"vocab\":\"5\",\"k\":3,\"sequences\":125}", "'vocab' must be an integer")]
    [InlineData("{\"format\":\"verifier-enumerated/1\",\"task\":\"max-of-k\",\"vocab\":5,\"k\":3,\"sequences\":125} {}", "content after the end")]
    [InlineData("{\"format\":\"verifier-enumerated/1\",\"task\":\"max-of-k\",\"vocab\":6,\"k\":3,\"sequences\":216}", "outside the model's vocabulary [0, 5)")]
    [InlineData("{\"format\":\"verifier-enumerated/1\",\"task\":\"max-of-k\",\"vocab\":5,\"k\":4,\"sequences\":625}", "more than the model's n_ctx = 3")]
    [InlineData("{\"format\":\"verifier-enumerated/1\",\"task\":\"sort\",\"vocab\":4,\"k\":1,\"sequences\":4}", "labels of sort")]
    [InlineData("{\"format\":\"verifier-enumerated/1\",\"task\":\"max-of-k\",\"vocab\":64,\"k\":6,\"sequences\":1}", "more than int.MaxValue")]
    public void Descriptor_is_parsed_strictly(string text, string expected)
    {
        var model = expected.StartsWith("labels of sort") ? ModelConfig.Create(8, 2, 4, 16, 1, 3, 5, 3, false)
            : expected.Contains("int.MaxValue") ? ModelConfig.Create(8, 2, 4, 16, 1, 8, 64, 64, false) : Model;
        string p = Write(text);
        var e = Assert.Throws<InvalidInputException>(() => TokenDataset.Load(p, model));
        Assert.Contains(expected, e.Message);
        Assert.StartsWith(p, e.Message);
    }

    [Fact]
    public void Spaces_over_int_max_and_unenumerable_tasks_are_refused_by_name()
    {
        var e = Assert.Throws<UsageException>(() => EnumeratedSpace.Of(new MaxOfKTask(64, 6)));
        Assert.Contains("68,719,476,736 sequences", e.Message);
        Assert.Contains("int.MaxValue", e.Message);
        Assert.Contains("more than 2⁶³", Assert.Throws<UsageException>(() => EnumeratedSpace.Of(new MaxOfKTask(1 << 20, 4000))).Message);
        string text = Write("abcdefghij");
        Assert.Contains("'text' is not enumerable", Assert.Throws<UsageException>(() => EnumeratedSpace.Of(new TextTask(text, 4))).Message);
        Assert.Equal(16_777_216, EnumeratedSpace.Of(new MaxOfKTask(64, 4)).Count);
    }

    [Fact]
    public void A_jsonl_file_is_never_taken_for_a_descriptor()
    {
        var d = TokenDataset.Load(Write("{\"tokens\":[1,2,3],\"labels\":[-1,-1,3]}\n"), Model);
        Assert.Null(d.Space);
        Assert.Contains("unknown field 'format'", Assert.Throws<InvalidInputException>(() => TokenDataset.Load(Write("{\"tokens\":[1],\"format\":\"x\",\"labels\":[1]}\n"), Model)).Message);
    }
}
