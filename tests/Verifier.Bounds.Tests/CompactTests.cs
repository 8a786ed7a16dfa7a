using System.Text.Json;
using FsCheck.Xunit;
using Verifier.Bounds;
using Verifier.Core;
using Verifier.TestSupport;

namespace Verifier.Bounds.Tests;

public class CompactTests
{
    static BoundResult Run(RandomWorld f, string strategy, CrosscoderWeights cc, double budget = 0.1) =>
        BoundProgram.Run(strategy, new BoundInputs(f.Model, f.Dir, f.Data, f.DataPath, cc, f.CcDir), Path.Combine(f.Dir, strategy + ".json"), overwrite: true, budget: budget);

    [Property(MaxTest = 30)]
    public bool Compact_and_mixed_bound_the_loss_from_above_and_the_accuracy_from_below_on_random_one_layer_models(ulong seed, bool attnOnly, bool fullBudget)
    {
        using var f = new RandomWorld(seed, attnOnly);
        var (loss, accuracy, _) = ReferenceForward.Evaluate(f.Model, f.Data);
        var cc = f.RandomCrosscoder(seed + 1, 6, 2);
        var results = new[] { Run(f, Strategies.CrosscoderCompact, cc), Run(f, Strategies.Mixed, cc, fullBudget ? 1.0 : 0.3) };
        return results.All(r => r.B0 >= loss - 1e-12 * Math.Max(1, loss) && double.IsFinite(r.B0)
            && r.AccuracyLb is { } a && a >= 0 && a <= accuracy + 1e-12);
    }

    [Property(MaxTest = 15)]
    public bool A_perfect_crosscoder_makes_the_compact_bound_exact_up_to_rounding(ulong seed, bool attnOnly)
    {
        using var f = new RandomWorld(seed, attnOnly);
        double truth = ReferenceForward.Evaluate(f.Model, f.Data).Loss;
        var r = Run(f, Strategies.CrosscoderCompact, f.IdentityCrosscoder());
        return r.B0 >= truth - 1e-12 && r.B0 - truth <= 1e-6 * Math.Max(truth, 1e-3);
    }

    [Property(MaxTest = 15)]
    public bool Arbitrary_advice_still_gives_a_bound_above_the_true_loss(ulong seed, bool attnOnly)
    {
        using var f = new RandomWorld(seed, attnOnly);
        double truth = ReferenceForward.Evaluate(f.Model, f.Data).Loss;
        var cc = f.RandomCrosscoder(seed + 7, 5, 2);
        var rng = new Rng(seed ^ 0xADu);
        (int, double)[][] Junk(int q, (int Index, double Value)[][] real) => real.Select(_ =>
            Enumerable.Range(0, 5).Where(_ => rng.NextInt(2) == 0).Select(i => (i, (rng.NextDouble() - 0.5) * 20)).ToArray()).ToArray();
        var (b0, acc, _, _, _) = CompactStrategy.Run(new BoundInputs(f.Model, f.Dir, f.Data, f.DataPath, cc, f.CcDir), Path.Combine(f.Dir, "junk.json"), null, null, default, Junk);
        return b0 >= truth - 1e-12 * Math.Max(1, truth) && acc <= ReferenceForward.Evaluate(f.Model, f.Data).Accuracy + 1e-12;
    }

    [Fact]
    public void The_mixed_strategy_moves_from_compact_to_brute_force_as_the_budget_grows()
    {
        using var f = new RandomWorld(12);
        var cc = f.RandomCrosscoder(13, 6, 2);
        var compact = Run(f, Strategies.CrosscoderCompact, cc);
        var bf = f.Bound(Strategies.BruteForce);
        var zero = Run(f, Strategies.Mixed, cc, 0.0);
        Assert.Equal(compact.B0, zero.B0);
        double previous = zero.B0;
        foreach (double budget in new[] { 0.25, 0.5, 0.75, 1.0 })
        {
            var r = Run(f, Strategies.Mixed, cc, budget);
            Assert.True(r.B0 <= previous * (1 + 1e-9), $"budget {budget}: {r.B0} > {previous}");
            Assert.True(r.B0 >= bf.B0 * (1 - 1e-6) - 1e-12 && r.Cost.Flops <= Math.Max(compact.Cost.Flops, budget * bf.Cost.Flops) + 1, $"budget {budget}: cost {r.Cost.Flops} vs brute force {bf.Cost.Flops}");
            previous = r.B0;
        }
    }

    [Fact]
    public void Two_layer_models_are_refused_by_name()
    {
        using var f = new RandomWorld(3, layers: 2);
        var cc = f.RandomCrosscoder(4, 6, 2);
        var e = Assert.Throws<UsageException>(() => Run(f, Strategies.CrosscoderCompact, cc));
        Assert.Contains("one-layer", e.Message);
    }

    [Fact]
    public void Compact_transcripts_match_the_schema_and_name_registered_lemmas()
    {
        using var f = new RandomWorld(5);
        var cc = f.RandomCrosscoder(3, 5, 2);
        var schema = StrategyTests.Schema;   // one instance: the schema library refuses to register the same $id twice
        var readme = File.ReadAllText(Path.Combine(ProofsDir, "README.md"));
        foreach (var s in Strategies.OneLayer)
        {
            var r = Run(f, s, cc, 0.5);
            using var doc = JsonDocument.Parse(File.ReadAllText(r.Transcript));
            Assert.True(schema.Evaluate(doc.RootElement).IsValid, s);
            foreach (var step in doc.RootElement.GetProperty("steps").EnumerateArray())
                Assert.Contains($"| {step.GetProperty("lemma").GetString()} |", readme.Replace("| IP, IPMEAN |", "| IP | IPMEAN |").Replace("| CL, CLMEMBERS |", "| CL | CLMEMBERS |"));
        }
    }

    static string ProofsDir
    {
        get
        {
            var d = new DirectoryInfo(AppContext.BaseDirectory);
            while (d is not null && !Directory.Exists(Path.Combine(d.FullName, "proofs"))) d = d.Parent;
            return Path.Combine(d!.FullName, "proofs");
        }
    }
}
