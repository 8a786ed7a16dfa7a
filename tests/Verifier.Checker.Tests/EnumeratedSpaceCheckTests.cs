using Verifier.Bounds;
using Verifier.Checker;
using Verifier.Core;

namespace Verifier.Checker.Tests;

/// <summary>A bound over the whole input space of an enumerable task (spec/dataset.md, "Enumerated input spaces"):
/// the bound and the checker read the same descriptor, enumerate the same sequences through Core, and the theorem
/// is about the uniform distribution over every input.</summary>
public sealed class EnumeratedSpaceCheckTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), $"verifier-space-{Guid.NewGuid():N}");
    readonly ModelWeights _model;
    readonly string _all, _explicit;

    public EnumeratedSpaceCheckTests()
    {
        Directory.CreateDirectory(_dir);
        ModelWeights.Random(ModelConfig.Create(8, 2, 4, 16, 1, 3, 5, 5, false), 7, 0.4).SaveInto(_dir);
        _model = ModelWeights.Load(_dir);
        var space = TokenDataset.Enumerated(EnumeratedSpace.Of(new MaxOfKTask(5, 3)));
        _all = Path.Combine(_dir, "all.json"); space.Save(_all);
        _explicit = Path.Combine(_dir, "all.jsonl"); File.WriteAllText(_explicit, space.ToJsonLines());
    }

    public void Dispose() => Directory.Delete(_dir, true);

    BoundInputs Inputs(string data) => new(_model, _dir, TokenDataset.Load(data, _model.Config), data);

    [Fact]
    public void Brute_force_over_the_whole_space_is_accepted_and_equals_the_explicit_list()
    {
        var r = BoundProgram.Run(Strategies.BruteForce, Inputs(_all), Path.Combine(_dir, "bf.json"), block: 16);
        var v = TranscriptChecker.Check(r.Transcript, _dir, null, _all);
        Assert.True(v.Accepted, v.Reason);
        Assert.Equal(r.B0, v.B0);
        Assert.Equal(125, v.Positions);
        Assert.Equal(TokenDataset.Enumerated(EnumeratedSpace.Of(new MaxOfKTask(5, 3))).ContentHash(), v.Artefacts!["dataset"]);
        Assert.True(r.B0 >= r.TrueLoss!.Value);
        // The same 125 sequences written out give the same claims (same order, same sums) ...
        var e = BoundProgram.Run(Strategies.BruteForce, Inputs(_explicit), Path.Combine(_dir, "bf-explicit.json"), block: 16);
        Assert.Equal(e.B0, r.B0);
        Assert.Equal(e.TrueLoss, r.TrueLoss);
        Assert.Equal(e.AccuracyLb, r.AccuracyLb);
        // ... but a transcript names its dataset by hash: the descriptor's transcript is not about the file, nor about another space.
        Assert.False(TranscriptChecker.Check(r.Transcript, _dir, null, _explicit).Accepted);
        string other = Path.Combine(_dir, "other.json");
        TokenDataset.Enumerated(EnumeratedSpace.Of(new MaxOfKTask(4, 3))).Save(other);
        var w = TranscriptChecker.Check(r.Transcript, _dir, null, other);
        Assert.False(w.Accepted);
        Assert.Contains("dataset", w.Reason);
    }

    [Fact]
    public void Shards_of_the_space_merge_into_an_accepted_bound()
    {
        var whole = BoundProgram.Run(Strategies.BruteForce, Inputs(_all), Path.Combine(_dir, "whole.json"), computeTrueLoss: false, block: 8);
        var shards = Enumerable.Range(0, 3).Select(i =>
        {
            var r = BoundProgram.Run(Strategies.BruteForce, Inputs(_all).Sharded(new ShardSpec(i, 3)), Path.Combine(_dir, $"s{i}.json"), computeTrueLoss: false, block: 8);
            var v = TranscriptChecker.Check(r.Transcript, _dir, null, _all);
            Assert.True(v.Accepted, v.Reason);
            Assert.Equal($"{i}/3", v.Part);
            Assert.Equal(new ShardSpec(i, 3).Range(125) is var (f, end) ? end - f : 0, v.Positions);
            return r.Transcript;
        }).ToList();
        string merged = Path.Combine(_dir, "merged.json");
        var m = Merge.Run(shards.Select(Merge.Read).ToList(), merged);
        Assert.True(Math.Abs(m.B0 - whole.B0) <= 1e-12 * whole.B0, $"merged {m.B0:R} vs whole {whole.B0:R}");
        var mv = TranscriptChecker.Check(merged, _dir, null, _all);
        Assert.True(mv.Accepted, mv.Reason);
        Assert.Equal(125, mv.Positions);
    }
}
