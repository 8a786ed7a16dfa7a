using System.Text.Json.Nodes;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Verifier.Bounds;
using Verifier.Checker;
using Verifier.Core;
using Verifier.TestSupport;

namespace Verifier.Checker.Tests;

/// <summary>Sharded bounds, their merge and the merged check (spec/shards.md, proofs/SHARD-merge.md).</summary>
public class ShardTests
{
    sealed class Sharded : IDisposable
    {
        public readonly RandomWorld W;
        public readonly CrosscoderWeights Cc;
        public Sharded(ulong seed) { W = new RandomWorld(seed, layers: 1 + (int)(seed % 2)); Cc = W.RandomCrosscoder(seed + 1, 6, 2); }
        BoundInputs Inputs(string strategy) => new(W.Model, W.Dir, W.Data, W.DataPath, Strategies.NeedsCrosscoder(strategy) ? Cc : null, Strategies.NeedsCrosscoder(strategy) ? W.CcDir : null);

        public string Shard(string strategy, int i, int n) =>
            BoundProgram.Run(strategy, Inputs(strategy).Sharded(new ShardSpec(i, n)), Path.Combine(W.Dir, $"{strategy}-{i}of{n}.json"), computeTrueLoss: false, clusters: 2).Transcript;
        public BoundResult Whole(string strategy) => BoundProgram.Run(strategy, Inputs(strategy), Path.Combine(W.Dir, $"{strategy}-whole.json"), clusters: 2);
        public (double B0, string Path) MergeOf(IEnumerable<string> shards, string name = "merged.json")
        {
            string path = Path.Combine(W.Dir, name);
            var r = Merge.Run(shards.Select(Merge.Read).ToList(), path);
            return (r.B0, path);
        }
        public Verdict Check(string path, IReadOnlyDictionary<string, RecordedVerdict>? recorded = null) =>
            TranscriptChecker.Check(path, W.Dir, W.CcDir, W.DataPath, recorded: recorded);
        public void Dispose() => W.Dispose();

        /// <summary>The first world from <paramref name="seed"/> on with at least <paramref name="sequences"/> sequences, each labelled.</summary>
        public static Sharded With(ulong seed, int sequences)
        {
            while (true)
            {
                var s = new Sharded(seed++);
                if (s.W.Data.Count >= sequences && s.W.Data.Sequences.All(q => q.LabelledCount > 0)) return s;
                s.Dispose();
            }
        }
    }

    [Property(MaxTest = 8)]
    public void Merged_bound_equals_the_unsharded_one_is_sound_and_accepted(PositiveInt seed, PositiveInt shards)
    {
        using var s = new Sharded((ulong)seed.Get);
        int n = 1 + (shards.Get - 1) % Math.Min(3, s.W.Data.Count);
        foreach (var strategy in Strategies.All)
        {
            if (Enumerable.Range(0, n).Any(i => s.W.Data.Slice(new ShardSpec(i, n).Range(s.W.Data.Count).First, new ShardSpec(i, n).Range(s.W.Data.Count).End).LabelledPositions == 0)) return;
            var whole = s.Whole(strategy);
            var (b0, path) = s.MergeOf(Enumerable.Range(0, n).Select(i => s.Shard(strategy, i, n)), $"merged-{strategy}.json");
            Assert.True(b0 >= whole.TrueLoss!.Value * (1 - 1e-12), $"{strategy}: merged {b0:R} below the true loss {whole.TrueLoss:R}");
            // Clustered clusters each shard's own sequences: another proof, so another (still sound) b₀.
            if (strategy != Strategies.Clustered) Assert.True(Math.Abs(b0 - whole.B0) <= 1e-9 * whole.B0, $"{strategy}: merged {b0:R} vs unsharded {whole.B0:R}");
            var v = s.Check(path);
            Assert.True(v.Accepted, $"{strategy}: {v.Reason}");
            Assert.Equal(b0, v.B0);
        }
    }

    [Fact]
    public void A_shard_transcript_is_about_its_part_alone_and_checks_alone()
    {
        using var s = Sharded.With(21, 2);
        string p = s.Shard(Strategies.BruteForce, 1, 2);
        var v = s.Check(p);
        Assert.True(v.Accepted, v.Reason);
        Assert.Equal("1/2", v.Part);
        var (first, end) = new ShardSpec(1, 2).Range(s.W.Data.Count);
        Assert.Equal(s.W.Data.Slice(first, end).LabelledPositions, v.Positions);
        Assert.Contains("over shard 1/2", v.Summary);
        // Its part must be the deterministic one: moving the range is refused.
        var t = JsonNode.Parse(File.ReadAllText(p))!.AsObject();
        t["artefacts"]!["dataset"]!["part"]!["first"] = first - 1;
        File.WriteAllText(p, t.ToJsonString());
        var bad = s.Check(p);
        Assert.False(bad.Accepted);
        Assert.Contains("dataset.part", bad.Reason);
    }

    [Fact]
    public void Merge_refuses_gaps_overlaps_duplicates_and_mixed_shards_naming_the_shard()
    {
        using var s = Sharded.With(22, 4);
        string a = s.Shard(Strategies.BruteForce, 0, 3), b = s.Shard(Strategies.BruteForce, 1, 3), c = s.Shard(Strategies.BruteForce, 2, 3);
        var gap = Assert.Throws<UsageException>(() => s.MergeOf([a, c]));
        Assert.Contains("shard 1/3 missing", gap.Message);
        var dup = Assert.Throws<UsageException>(() => s.MergeOf([a, b, b, c]));
        Assert.Contains("shard 1/3 is given twice", dup.Message);
        string half = s.Shard(Strategies.BruteForce, 1, 2);
        var overlap = Assert.Throws<MismatchException>(() => s.MergeOf([a, b, c, half]));
        Assert.Contains("overlapping", overlap.Message);
        string trivial = s.Shard(Strategies.Trivial, 1, 3);
        var mixed = Assert.Throws<MismatchException>(() => s.MergeOf([a, trivial, c]));
        Assert.Contains("strategy", mixed.Message);
        var whole = Assert.Throws<InvalidInputException>(() => s.MergeOf([s.Whole(Strategies.BruteForce).Transcript]));
        Assert.Contains("not the transcript of a shard", whole.Message);
    }

    [Fact]
    public void Altering_a_shard_or_the_merge_is_rejected_with_the_shard_named()
    {
        using var s = Sharded.With(23, 3);
        var shards = Enumerable.Range(0, 3).Select(i => s.Shard(Strategies.CrosscoderTables, i, 3)).ToArray();
        var (_, merged) = s.MergeOf(shards);
        string original = File.ReadAllText(merged);

        // 1. A shard's transcript edited after the merge.
        string shard1 = File.ReadAllText(shards[1]);
        File.WriteAllText(shards[1], shard1.Replace("\"loss_sum\":", "\"loss_sum\":0.0,\"x\":"));
        var v = s.Check(merged);
        Assert.False(v.Accepted);
        Assert.Contains("shard 1/3", v.Reason);
        File.WriteAllText(shards[1], shard1);
        Assert.True(s.Check(merged).Accepted);

        // 2. A shard's loss sum lowered in the merge.
        var t = JsonNode.Parse(original)!.AsObject();
        var step = t["steps"]![2]!;
        step["claim"]!["loss_sum"] = step["claim"]!["loss_sum"]!.GetValue<double>() * 0.5;
        File.WriteAllText(merged, t.ToJsonString());
        v = s.Check(merged);
        Assert.False(v.Accepted);
        Assert.Contains("loss_sum of shard 2/3", v.Reason);

        // 3. A shard left out of the merge (the sums of the others over all positions): a gap.
        t = JsonNode.Parse(original)!.AsObject();
        var mean = t["steps"]![3]!;
        mean["inputs"] = new JsonArray(0, 2);
        File.WriteAllText(merged, t.ToJsonString());
        v = s.Check(merged);
        Assert.False(v.Accepted);
        Assert.Contains("is not bounded by any input", v.Reason);

        // 4. The same shard twice in place of another (an overlap).
        t = JsonNode.Parse(original)!.AsObject();
        t["steps"]![1] = t["steps"]![0]!.DeepClone();
        t["steps"]![1]!["id"] = 1;
        File.WriteAllText(merged, t.ToJsonString());
        v = s.Check(merged);
        Assert.False(v.Accepted);
        Assert.Contains("SHARD 0/3", v.Reason);
    }

    [Fact]
    public void Recorded_shard_verdicts_are_used_only_where_hash_version_and_artefacts_match()
    {
        using var s = Sharded.With(24, 2);
        var shards = Enumerable.Range(0, 2).Select(i => s.Shard(Strategies.BruteForce, i, 2)).ToArray();
        var (_, merged) = s.MergeOf(shards);
        var recorded = shards.Select(p => RecordedVerdict.Of(s.Check(p), Hashing.Sha256File(p))).ToDictionary(r => r.TranscriptSha256);
        var v = s.Check(merged, recorded);
        Assert.True(v.Accepted, v.Reason);
        Assert.Equal(2, v.ShardsFromRecordedVerdicts);
        // A verdict about other artefacts is not taken: that shard is checked again.
        var first = recorded.Values.First();
        recorded[first.TranscriptSha256] = first with { Artefacts = first.Artefacts.ToDictionary(a => a.Key, a => a.Key == "dataset" ? new string('0', 64) : a.Value) };
        v = s.Check(merged, recorded);
        Assert.True(v.Accepted, v.Reason);
        Assert.Equal(1, v.ShardsFromRecordedVerdicts);
        // A recorded verdict round-trips through its file format.
        var again = RecordedVerdict.Parse("v.json", first.ToJson());
        Assert.Equal(first.LossSum, again.LossSum);
        Assert.Equal(first.Part, again.Part);
    }
}
