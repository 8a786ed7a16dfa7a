using System.Text.Json.Nodes;
using Verifier.Bounds;
using Verifier.Checker;
using Verifier.Core;
using Verifier.TestSupport;

namespace Verifier.Checker.Tests;

/// <summary>Second red-team pass (Kernel/BFB, CC, ACC, SHARD, enumerated spaces). Each test builds the false transcript
/// whole, computes the truth independently, and asserts the checker REFUSES it; each fails until its flaw is fixed.</summary>
public class RedTeam2Tests
{
    static string Lemma(JsonNode s) => s["lemma"]!.GetValue<string>();

    /// <summary>A world whose true accuracy is below 1 with at least <paramref name="minSeqs"/> sequences.</summary>
    static RandomWorld ImperfectWorld(int minSeqs, bool attnOnly = false)
    {
        for (ulong seed = 1; ; seed++)
        {
            var world = new RandomWorld(seed, attnOnly);
            if (world.Data.Count >= minSeqs && ReferenceForward.Evaluate(world.Model, world.Data).Accuracy < 1) return world;
            world.Dispose();
        }
    }

    /// <summary>FLAW (ACC, MEAN: proofs/ACC-accuracy.md, TranscriptChecker.Mean). MEAN adds its inputs' claimed error
    /// counts as `errors += (long)Math.Floor(e)` in unchecked 64-bit arithmetic. An input may claim any finite count at
    /// least its certified one, so two inputs claiming 2⁶² errors each are both accepted, and their sum wraps to
    /// long.MinValue = −2⁶³. MEAN then certifies its own claim against a negative count: `errors: 0` is accepted and
    /// the verdict reports accuracy ≥ 100 % on a model that misclassifies. Fix: cap each input's count at its
    /// positions (or sum in checked/double arithmetic and refuse claims above the labelled positions).</summary>
    [Fact]
    public void Mean_error_counts_that_overflow_cannot_certify_perfect_accuracy()
    {
        using var world = ImperfectWorld(2);
        var truth = ReferenceForward.Evaluate(world.Model, world.Data);
        var t = JsonNode.Parse(File.ReadAllText(world.Bound(Strategies.BruteForce, computeTrueLoss: false, block: 1).Transcript))!.AsObject();
        var steps = t["steps"]!.AsArray();
        var mean = steps.Last(s => Lemma(s!) == "MEAN")!;
        var inputs = mean["inputs"]!.AsArray().Select(i => i!.GetValue<int>()).ToArray();
        Assert.True(inputs.Length >= 2);
        steps[inputs[0]]!["claim"]!["errors"] = 4611686018427387904.0;   // 2⁶², above the certified count: accepted
        steps[inputs[1]]!["claim"]!["errors"] = 4611686018427387904.0;
        mean["claim"]!["errors"] = 0;
        var v = new Forger(world, null!).Repair(t);
        Assert.False(v.Accepted && v.AccuracyLb > truth.Accuracy,
            $"accepted with accuracy ≥ {v.AccuracyLb:R} above the true {truth.Accuracy:R} ({v.Summary})");
    }
}
