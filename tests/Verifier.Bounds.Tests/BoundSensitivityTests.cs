using FsCheck.Xunit;
using Verifier.Bounds.Analysis;
using Verifier.Core;
using Verifier.TestSupport;

namespace Verifier.Bounds.Tests;

/// <summary>The change in the tables bound when one pair's interaction is removed (issue 6.2).</summary>
public class BoundSensitivityTests
{
    [Property(MaxTest = 15)]
    public bool With_nothing_removed_it_is_the_crosscoder_tables_bound(ulong seed, bool twoLayers)
    {
        using var f = new RandomWorld(seed, layers: twoLayers ? 2 : 1);
        var cc = f.RandomCrosscoder(seed + 1, 6, 3);
        var r = BoundSensitivity.Run(f.Model, cc, f.Data);
        var tables = f.Bound(Strategies.CrosscoderTables, cc);
        // Same arithmetic, same order: bit for bit; the uncapped bound is never below the capped one.
        return r.B0 == tables.B0 && r.UncappedB0 >= r.B0 * (1 - 1e-12) && r.Pairs.Values.All(p => double.IsFinite(p.Uncapped) && p.Sequences > 0);
    }

    [Fact]
    public void Removing_the_planted_pair_tightens_the_bound_and_a_pair_that_never_crosses_a_threshold_together_changes_nothing()
    {
        var w = InteractionTests.Model();
        var cc = InteractionTests.Identity(w.Config);
        var r = BoundSensitivity.Run(w, cc, InteractionTests.Data(0, 1, 2, 3));
        var planted = r.Pairs[(InteractionTests.XPlus, InteractionTests.YPlus)];
        // Token 2 is every fourth of the 40 one-token sequences: 10 sequences.
        Assert.Equal(10, planted.Sequences);
        Assert.True(planted.Uncapped > 0);
        Assert.Equal(planted.Uncapped, r.Pairs.Values.Max(p => p.Uncapped));
        // x− and y− co-occur on token 3 but push neuron 0 further below its threshold: no interaction to remove.
        Assert.Equal(0, r.Pairs[(InteractionTests.XMinus, InteractionTests.YMinus)].Uncapped);
        // Features with no mid-site row have U = 0: no ReLU interaction either.
        Assert.All(r.Pairs.Values.Where(p => (p.I, p.J) != (InteractionTests.XPlus, InteractionTests.YPlus)), p => Assert.Equal(0, p.Uncapped));
    }

    [Fact]
    public void The_b0_removal_validation_ranks_the_planted_pair_first()
    {
        var w = InteractionTests.Model();
        var rep = InteractionAnalysis.Analyse(w, InteractionTests.Identity(w.Config), InteractionTests.Data(0, 1, 2, 3), new InteractionAnalysis.Options(BoundRemoval: true));
        var top = rep.Ranked.First(x => x.Metric == "b0-removal");
        Assert.Equal((InteractionTests.XPlus, InteractionTests.YPlus), (top.I, top.J));
        Assert.Contains(rep.Validation, v => v.Target == "b0-removal" && v.Metric == "relu-e-measured");
        Assert.NotNull(rep.BoundRemoval);
        Assert.Equal(1, rep.BoundRemoval!.PairsMovingUncapped);
    }
}
