using Verifier.Bounds.Analysis;
using Verifier.Core;

namespace Verifier.Bounds.Tests;

/// <summary>Hand-built models and crosscoders where the interactions are known.</summary>
public class InteractionTests
{
    /// <summary>d_model 2, one layer, attention silent (all zero), so h^{mid} = h⁰ = W_E[x]. Token 0 → (1, 0), 1 → (0, 1),
    /// 2 → (1, 1), 3 → (−1, −1). Neuron 0 has W_in = (1, 1), b_in = −1.5: it fires only when both coordinates are on
    /// together (token 2). Neuron 1 has W_in = 0, b_in = 1: always on, so switching the MLP off changes the loss.</summary>
    internal static ModelWeights Model()
    {
        var c = ModelConfig.Create(2, 1, 1, 2, 1, 1, 4, 3, attnOnly: false);
        var r = new Rng(5);
        var t = c.ParameterShapes().ToDictionary(p => p.Name, p => new NamedTensor(p.Name, p.Shape, new double[p.Shape.Aggregate(1, (a, b) => a * b)], "F64"));
        t["embed.W_E"] = t["embed.W_E"] with { Data = [1, 0, 0, 1, 1, 1, -1, -1] };
        t["blocks.0.mlp.W_in"] = t["blocks.0.mlp.W_in"] with { Data = [1, 0, 1, 0] };      // [d, m] row-major: W_in[:,0] = (1, 1)
        t["blocks.0.mlp.b_in"] = t["blocks.0.mlp.b_in"] with { Data = [-1.5, 1] };
        t["blocks.0.mlp.W_out"] = t["blocks.0.mlp.W_out"] with { Data = [0.7, -0.4, 0.9, 0.3] };
        t["unembed.W_U"] = t["unembed.W_U"] with { Data = Enumerable.Range(0, 6).Select(_ => r.NextDouble() * 2 - 1).ToArray() };
        return new ModelWeights(c, t);
    }

    /// <summary>W_enc = [I, −I], W_dec = [I; −I] at every site (relu-l1): features are the positive and negative parts
    /// of each coordinate, and a' = h exactly.</summary>
    internal static CrosscoderWeights Identity(ModelConfig c)
    {
        var sites = c.SiteNames(); int S = sites.Count, d = c.DModel, n = 2 * S * d;
        var enc = new double[S * d * n]; var dec = new double[n * S * d];
        for (int j = 0; j < S * d; j++) { enc[j * n + j] = 1; enc[j * n + S * d + j] = -1; dec[j * S * d + j] = 1; dec[(S * d + j) * S * d + j] = -1; }
        var cfg = new CrosscoderConfig(n, d, sites, CrosscoderModes.ReluL1, null, 1.0, Enumerable.Repeat(1.0, S).ToArray(), new string('0', 64), null, 0);
        return new CrosscoderWeights(cfg, new Dictionary<string, NamedTensor>
        {
            ["W_enc"] = new("W_enc", [S, d, n], enc, "F64"), ["W_dec"] = new("W_dec", [n, S, d], dec, "F64"),
            ["b_enc"] = new("b_enc", [n], new double[n], "F64"), ["b_dec"] = new("b_dec", [S, d], new double[S * d], "F64"),
        });
    }

    internal static TokenDataset Data(params int[] tokens) =>
        new(Enumerable.Range(0, 40).Select(k => new Sequence([tokens[k % tokens.Length]], [k % 3])).ToList());

    // Mid-site (site 1) features: coordinate x+ is 1·2 + 0 = 2, y+ is 3; x− is S·d + 2 = 8, y− is 9.
    internal const int XPlus = 2, YPlus = 3, XMinus = 8, YMinus = 9;

    [Fact]
    public void The_planted_pair_ranks_first_and_a_pair_that_never_crosses_a_threshold_together_has_no_interaction()
    {
        var w = Model();
        var r = InteractionAnalysis.Analyse(w, Identity(w.Config), Data(0, 1, 2, 3), new InteractionAnalysis.Options());
        var measured = r.Ranked.Where(x => x.Metric == "relu-e-measured").ToList();
        Assert.Equal((XPlus, YPlus), (measured[0].I, measured[0].J));
        Assert.Equal(0, measured[0].Layer);
        Assert.True(measured[0].Value > 0);
        // x− and y− co-occur (token 3) but push neuron 0 further below its threshold: no measured interaction.
        Assert.DoesNotContain(measured, x => (x.I, x.J) == (XMinus, YMinus) && x.Value > 0);
        Assert.Contains(r.Neurons, n => n.Neuron == 0 && n.EMass > 0);
        Assert.DoesNotContain(r.Neurons, n => n.Neuron == 1 && n.EMass > 0);
    }

    /// <summary>The same planted model with GELU (T3: the measured linearisation error of any activation): the pair that
    /// crosses neuron 0's threshold together still ranks first, far above the pair that only bends GELU's negative tail.</summary>
    [Fact]
    public void With_gelu_the_planted_pair_still_ranks_first_and_the_curvature_pair_is_far_smaller()
    {
        var b = Model();
        var w = new ModelWeights(b.Config with { Act = ActKind.Gelu }, b.Tensors);
        var r = InteractionAnalysis.Analyse(w, Identity(w.Config), Data(0, 1, 2, 3), new InteractionAnalysis.Options());
        var measured = r.Ranked.Where(x => x.Metric == "relu-e-measured").ToList();
        Assert.Equal((XPlus, YPlus), (measured[0].I, measured[0].J));
        double planted = measured[0].Value;
        double tail = measured.Where(x => (x.I, x.J) == (XMinus, YMinus)).Select(x => x.Value).DefaultIfEmpty(0).Single();
        Assert.True(tail > 0, "GELU bends below 0: the negative pair interacts a little");
        Assert.True(planted > 5 * tail, $"planted {planted}, tail {tail}");
        // E through GELU, by hand at token 2: c = −1.5, p = (1, 1): I = gelu(0.5) − gelu(−0.5) − gelu(−0.5) + gelu(−1.5).
        static double G(double x) => Activation.Apply(ActKind.Gelu, x);
        double byHand = Math.Abs(G(0.5) - 2 * G(-0.5) + G(-1.5)) * 10 / 40;   // token 2 is 10 of the 40 sequences
        Assert.Equal(byHand, planted, 12);
        // token 3: c = −1.5, p = (−1, −1): gelu(−3.5) − 2 gelu(−2.5) + gelu(−1.5)
        Assert.Equal(Math.Abs(G(-3.5) - 2 * G(-2.5) + G(-1.5)) * 10 / 40, tail, 12);
    }

    /// <summary>interactions and its bound-removal validation run through LayerNorm + GELU models (T3), every value finite.</summary>
    [Theory]
    [InlineData("gelu-1l")]
    [InlineData("gpt2-like")]
    [InlineData("final-rms")]
    [InlineData("neo-like")]
    public void Interactions_run_on_layernorm_models_with_the_bound_removal_validation(string family)
    {
        var c = Verifier.TestSupport.Families.Get(family);
        var w = ModelWeights.Random(c, 3, 0.3);
        var data = new TokenDataset(Enumerable.Range(0, 6).Select(k => new Sequence([k % c.DVocab, (k + 2) % c.DVocab, (3 * k) % c.DVocab], [-1, k % c.DVocabOut, (k + 1) % c.DVocabOut])).ToList());
        var rep = InteractionAnalysis.Analyse(w, Identity(c), data, new InteractionAnalysis.Options(BoundRemoval: true));
        Assert.Contains(rep.Ranked, x => x.Metric == "relu-e-measured" && x.Value > 0);
        Assert.All(rep.Ranked, x => Assert.True(double.IsFinite(x.Value), $"{x.Metric} {x.Value}"));
        Assert.NotNull(rep.BoundRemoval);
        Assert.True(double.IsFinite(rep.BoundRemoval!.UncappedB0));
        Assert.Contains(rep.Validation, v => v.Target == "E-measured");
    }

    [Fact]
    public void Interactions_refuse_a_rotary_model_naming_the_option()
    {
        var c = Verifier.TestSupport.Families.Get("llama-like");
        var w = ModelWeights.Random(c, 3, 0.3);
        var e = Assert.Throws<UnsupportedConfigException>(() => InteractionAnalysis.Analyse(w, Identity(c), Data(0, 1), new InteractionAnalysis.Options()));
        Assert.Contains("interactions", e.Message);
        Assert.Contains("is not covered", e.Message);
    }

    [Fact]
    public void Fidelity_is_one_for_a_perfect_reconstruction_and_for_keep_dominant_when_every_neuron_has_one_feature()
    {
        var w = Model();
        var (model, zero, results) = Suppression.Run(w, Identity(w.Config), Data(0, 1), seed: 1);
        Assert.NotEqual(model, zero);
        Assert.Equal(1.0, results.Single(s => s.Scheme == "full-reconstruction").Fidelity, 9);
        Assert.Equal(1.0, results.Single(s => s.Scheme == "keep-dominant").Fidelity, 9);
        // With token 2 present, neuron 0 needs both features: keeping only the dominant one loses fidelity.
        var (_, _, both) = Suppression.Run(w, Identity(w.Config), Data(0, 1, 2), seed: 1);
        Assert.Equal(1.0, both.Single(s => s.Scheme == "full-reconstruction").Fidelity, 9);
        Assert.True(both.Single(s => s.Scheme == "keep-dominant").Fidelity < 1 - 1e-6);
    }

    [Fact]
    public void KL_is_zero_for_independent_samples_and_positive_for_a_planted_dependence()
    {
        // An exact product grid: every (a, b) combination equally often.
        var a = new List<int>(); var b = new List<int>();
        for (int x = 0; x < 4; x++) for (int y = 0; y < 4; y++) for (int k = 0; k < 5; k++) { a.Add(x); b.Add(y); }
        Assert.Equal(0, InteractionAnalysis.Kl(a.ToArray(), b.ToArray(), 4), 12);
        Assert.True(InteractionAnalysis.Kl(a.ToArray(), a.ToArray(), 4) > 1.0);   // b = a: maximal dependence, KL = log 4
    }

    [Fact]
    public void Affinity_propagation_finds_two_planted_blocks_and_the_rand_index_scores_agreement()
    {
        // Points 0–3 interact strongly with each other, 4–7 with each other, barely across.
        var sim = new double[8, 8];
        for (int i = 0; i < 8; i++) for (int j = 0; j < 8; j++) sim[i, j] = i / 4 == j / 4 ? 1.0 : 0.01;
        var labels = FeatureClusters.AffinityPropagation(sim, seed: 3);
        Assert.Equal(2, labels.Distinct().Count());
        Assert.All(Enumerable.Range(0, 8), i => Assert.Equal(labels[i / 4 * 4], labels[i]));
        Assert.Equal(1.0, FeatureClusters.AdjustedRand(labels, labels.Select(l => l + 100).ToArray()), 12);
        Assert.True(FeatureClusters.AdjustedRand(labels, [0, 1, 0, 1, 0, 1, 0, 1]) < 0.1);
    }

    [Fact]
    public void Spearman_is_one_for_monotone_and_minus_one_for_reversed_data()
    {
        double[] x = [1, 2, 3, 4, 5], y = [10, 20, 25, 100, 1000];
        Assert.Equal(1, InteractionAnalysis.Spearman(x, y), 12);
        Assert.Equal(-1, InteractionAnalysis.Spearman(x, y.Reverse().ToArray()), 12);
    }

    [Fact]
    public void Model_diff_ranks_a_token_that_shifts_the_score_consistently_above_one_that_shifts_it_more_but_unevenly()
    {
        // Token 1 ("trigger", in a third of the sequences) lowers score_B − score_A by 5 in every sequence containing it;
        // token 2 ("a large value", in a sixth) by 8 on average but ±20 from sequence to sequence; tokens 3 and 4 do
        // nothing. Noise ±1 throughout.
        var r = new Rng(11);
        var seqs = new List<(int[] Tokens, double A, double B)>();
        for (int q = 0; q < 600; q++)
        {
            var tokens = new[] { 3 + r.NextInt(2), r.NextInt(3) == 0 ? 1 : 3, r.NextInt(6) == 0 ? 2 : 4 };
            double d = (r.NextDouble() - 0.5) * 2;
            if (tokens.Contains(1)) d -= 5;
            if (tokens.Contains(2)) d -= 8 + (r.NextDouble() - 0.5) * 40;
            seqs.Add((tokens, 100, 100 + d));
        }
        var ranked = new[] { 1, 2, 3, 4 }.Select(x => ModelDiff.Contrast(x, seqs)).OrderByDescending(t => Math.Abs(t.T)).ToList();
        Assert.Equal(1, ranked[0].Token);
        Assert.True(Math.Abs(ranked.Single(t => t.Token == 2).Difference) > Math.Abs(ranked[0].Difference));   // by Δ alone, 2 would lead
        Assert.InRange(ranked[0].Difference, -5.5, -4.5);
        Assert.True(Math.Abs(ranked.Single(t => t.Token == 4).T) < Math.Abs(ranked.Single(t => t.Token == 2).T));
    }
}
