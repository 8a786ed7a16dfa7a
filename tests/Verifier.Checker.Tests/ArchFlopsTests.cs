using System.Text.Json;
using Verifier.Bounds;
using Verifier.Checker;
using Verifier.Core;

namespace Verifier.Checker.Tests;

/// <summary>spec/costs.md for every architecture, both sides: the generator's <see cref="Flops"/> (and trivial's table cost)
/// and the checker's independently written <see cref="Costs"/> give the same figure for every family, and the generator's
/// brute-force, trivial and clustered transcripts of every family are accepted (the checker recomputes each step's FLOPs).</summary>
public class ArchFlopsTests
{
    public static IEnumerable<object[]> Families() => ArchCheckerTests.Families();

    static ModelConfig Family(string name) => ArchCheckerTests.FamilyTable().Single(f => f.Name == name).Config.Validated();

    /// <summary>Every label pattern of every length up to n_ctx (each position labelled or not).</summary>
    static IEnumerable<int[]> LabelPatterns(int nCtx)
    {
        for (int T = 1; T <= nCtx; T++)
            for (int mask = 0; mask < 1 << T; mask++)
                yield return Enumerable.Range(0, T).Select(t => (mask >> t & 1) == 1 ? t % 3 : -1).ToArray();
    }

    static IEnumerable<ModelConfig> Variants(ModelConfig c)
    {
        yield return c;
        yield return c with { NCtx = 9 };
        if (c.AttnTypes is not null) yield return c with { NCtx = 9, WindowSize = 3 };
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void Generator_flops_equal_checker_costs_for_every_family(string family)
    {
        foreach (var c in Variants(Family(family)))
        {
            Assert.Equal(Flops.Mlp(c), Costs.Mlp(c));
            foreach (var labels in LabelPatterns(c.NCtx))
            {
                int p = labels.Count(y => y >= 0);
                Assert.Equal(Flops.BruteForce(c, labels), Costs.BruteForce(c, labels));
                Assert.Equal(Flops.Forward(c, labels.Length, p), Costs.Forward(c, labels.Length, p));
                Assert.Equal(Flops.Forward(c, labels.Length, 0), Costs.Forward(c, labels.Length, 0));
            }
            for (int T = 1; T <= c.NCtx; T++)
                for (int l = 0; l < c.NLayers; l++) Assert.Equal(Flops.Attention(c, T, l), Costs.Attention(c, T, l));
            for (int t = 0; t < c.NCtx; t++) Assert.Equal(TrivialStrategy.TableFlops(c, t), Costs.TrivialTable(c, t));
        }
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void Generator_brute_force_trivial_and_clustered_transcripts_are_accepted_with_their_flops(string family)
    {
        using var w = new ArchWorld(Family(family), seed: 11, sequences: 5);
        w.SaveCrosscoder(3);
        var cc = CrosscoderWeights.Load(w.CcDir);
        foreach (var (strategy, clusters) in new[] { (Strategies.BruteForce, 1), (Strategies.Trivial, 1), (Strategies.Clustered, 1), (Strategies.Clustered, 2) })
        {
            var inputs = new BoundInputs(w.Model, w.Dir, w.Data, w.DataPath, Strategies.NeedsCrosscoder(strategy) ? cc : null, Strategies.NeedsCrosscoder(strategy) ? w.CcDir : null);
            string path = Path.Combine(w.Dir, $"{strategy}-{clusters}.json");
            var r = BoundProgram.Run(strategy, inputs, path, computeTrueLoss: false, clusters: clusters, overwrite: true);
            var v = TranscriptChecker.Check(r.Transcript, w.Dir, Strategies.NeedsCrosscoder(strategy) ? w.CcDir : null, w.DataPath);
            Assert.True(v.Accepted, $"{family} {strategy} c={clusters}: {v.Summary}");
            // brute force's steps are the architecture's brute-force figure
            if (strategy == Strategies.BruteForce)
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(r.Transcript));
                long bf = doc.RootElement.GetProperty("steps").EnumerateArray().Where(s => s.GetProperty("lemma").GetString() is "BF" or "BFB")
                    .Sum(s => s.GetProperty("cost").GetProperty("flops").GetInt64());
                Assert.Equal(w.Data.Sequences.Sum(s => Costs.BruteForce(w.C, s.Labels)), bf);
            }
        }
    }
}
