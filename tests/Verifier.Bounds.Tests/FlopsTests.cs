using Verifier.Bounds;
using Verifier.Core;
using Verifier.TestSupport;

namespace Verifier.Bounds.Tests;

/// <summary>spec/costs.md for every architecture: the basic model's figures are the earlier formulas exactly, and each
/// architecture option changes brute force's count by its own term (normalisations, the gate, rotations, fewer key/value
/// heads, local windows), or leaves it alone where the algorithm's count does not change (activation kind, parallel
/// attention and MLP, the attention scale options).</summary>
public class FlopsTests
{
    static ModelConfig Basic(int layers = 2, bool attnOnly = false, int nCtx = 6) => ModelConfig.Create(8, 2, 4, 12, layers, nCtx, 7, 7, attnOnly);

    static readonly int[][] LabelSets =
    [
        [3],
        [-1, -1, 2],
        [1, -1, 4, -1, -1, 0],
        [0, 1, 2, 3, 4, 5],
        [-1, -1, -1, -1, -1, 6],
    ];

    // The basic architecture's formulas before every architecture had its terms (spec/costs.md at 941edee), written out.
    static long OldAttention(ModelConfig c, long T)
    {
        long d = c.DModel, H = c.NHeads, dh = c.DHead, pairs = T * (T + 1) / 2;
        return H * 3 * (2 * T * d * dh + T * dh) + H * pairs * (2 * dh + 1) + H * (4 * pairs + T) + H * pairs * 2 * dh + H * 2 * T * dh * d + T * d;
    }

    static long OldMlp(ModelConfig c) => 4L * c.DModel * c.DMlp + 2L * c.DMlp + c.DModel;

    static long OldForward(ModelConfig c, int T, int p)
    {
        long d = c.DModel, V = c.DVocabOut, f = T * d;
        for (int l = 0; l < c.NLayers; l++) f += OldAttention(c, T) + T * d + (c.AttnOnly ? 0 : T * OldMlp(c) + T * d);
        return f + p * (2 * d * V + V) + p * (3 * V + 1);
    }

    static long OldBruteForce(ModelConfig c, int[] labels)
    {
        long d = c.DModel, H = c.NHeads, dh = c.DHead, V = c.DVocabOut, T = labels.Length, p = 0, pairs = 0;
        for (int t = 0; t < T; t++) if (labels[t] >= 0) { p++; pairs += t + 1; }
        long f = T * d;
        for (int l = 0; l + 1 < c.NLayers; l++) f += OldAttention(c, T) + T * d + (c.AttnOnly ? 0 : T * OldMlp(c) + T * d);
        f += H * 2 * (2 * T * d * dh + T * dh) + H * (2 * p * d * dh + p * dh) + H * pairs * (2 * dh + 1) + H * (4 * pairs + p) + H * pairs * 2 * dh
           + H * 2 * p * dh * d + 2 * p * d + (c.AttnOnly ? 0 : p * OldMlp(c) + p * d);
        return f + p * (2 * d * V + V) + p * (3 * V + 1);
    }

    static long OldTable(ModelConfig c, int t)
    {
        long d = c.DModel, H = c.NHeads, dh = c.DHead, V = c.DVocabOut, f = (long)c.DVocab * d + d;
        for (int l = 0; l < c.NLayers; l++) f += H * (2 * d * dh + dh + 2 * (t + 1) * dh + 2 * dh * d) + 2 * d + (c.AttnOnly ? 0 : OldMlp(c) + d);
        return f + V * (V * (2 * d + 1) + 3 * V + 1);
    }

    [Theory]
    [InlineData(1, false)]
    [InlineData(2, false)]
    [InlineData(3, true)]
    public void The_basic_models_figures_are_unchanged(int layers, bool attnOnly)
    {
        var c = Basic(layers, attnOnly);
        Assert.True(c.IsBasic);
        Assert.Equal(OldMlp(c), Flops.Mlp(c));
        foreach (var labels in LabelSets)
        {
            Assert.Equal(OldBruteForce(c, labels), Flops.BruteForce(c, labels));
            Assert.Equal(OldForward(c, labels.Length, 2), Flops.Forward(c, labels.Length, 2));
            Assert.Equal(OldAttention(c, labels.Length), Flops.Attention(c, labels.Length));
        }
        for (int t = 0; t < c.NCtx; t++) Assert.Equal(OldTable(c, t), TrivialStrategy.TableFlops(c, t));
    }

    static long BF(ModelConfig c, int[] labels) => Flops.BruteForce(c.Validated(), labels);

    [Theory]
    [InlineData(NormKind.LN, 7)]
    [InlineData(NormKind.LNPre, 5)]
    [InlineData(NormKind.RMS, 4)]
    [InlineData(NormKind.RMSPre, 3)]
    public void A_normalisation_adds_its_cost_at_every_normalised_vector(NormKind kind, int perDim)
    {
        foreach (bool attnOnly in new[] { false, true })
        {
            var c = Basic(2, attnOnly);
            long each = perDim * c.DModel + 2;
            foreach (var labels in LabelSets)
            {
                long T = labels.Length, p = labels.Count(y => y >= 0);
                // layer 0: ln1 (and ln2) at every position; the last layer: ln1 everywhere, ln2 at P; ln_final at P.
                long normalised = attnOnly ? T + T + p : 2 * T + T + p + p;
                Assert.Equal(BF(c, labels) + normalised * each, BF(c with { Normalization = kind }, labels));
            }
        }
    }

    [Fact]
    public void Final_rms_makes_ln_final_an_RMS_norm()
    {
        var ln = Basic() with { Normalization = NormKind.LN };
        var lnpre = Basic() with { Normalization = NormKind.LNPre };
        foreach (var labels in LabelSets)
        {
            long p = labels.Count(y => y >= 0), d = ln.DModel;
            Assert.Equal(BF(ln, labels) - p * 3 * d, BF(ln with { FinalRms = true }, labels));       // 7d + 2 → 4d + 2
            Assert.Equal(BF(lnpre, labels) - p * 2 * d, BF(lnpre with { FinalRms = true }, labels)); // 5d + 2 → 3d + 2
        }
    }

    [Fact]
    public void The_gate_adds_its_product_and_the_element_wise_product_at_every_MLP_position()
    {
        var c = Basic();
        long d = c.DModel, m = c.DMlp;
        Assert.Equal(Flops.Mlp(c) + 2 * d * m + m, Flops.Mlp((c with { GatedMlp = true }).Validated()));
        foreach (var labels in LabelSets)
        {
            long T = labels.Length, p = labels.Count(y => y >= 0);
            Assert.Equal(BF(c, labels) + (T + p) * (2 * d * m + m), BF(c with { GatedMlp = true }, labels));
        }
    }

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public void Rotary_adds_6_per_rotated_pair_of_q_and_k_and_drops_the_position_add(int rotaryDim)
    {
        var c = Basic();
        var r = c with { Rotary = true, RotaryDim = rotaryDim };
        foreach (var labels in LabelSets)
        {
            long T = labels.Length, p = labels.Count(y => y >= 0), H = c.NHeads, pairs = rotaryDim / 2;
            // layer 0: q and k of every head at every position; the last layer: k everywhere, q at P.
            long rotations = (2 * H * T + H * T + H * p) * pairs * 6;
            Assert.Equal(BF(c, labels) + rotations - T * c.DModel, BF(r, labels));
            Assert.True(BF(r, labels) > BF(c, labels));
        }
    }

    [Fact]
    public void Grouped_query_attention_lowers_the_key_and_value_products()
    {
        var c = ModelConfig.Create(8, 4, 4, 12, 2, 6, 7, 7, false);
        long d = c.DModel, dh = c.DHead;
        foreach (int kv in new[] { 1, 2 })
            foreach (var labels in LabelSets)
            {
                long T = labels.Length, saved = (c.NHeads - kv) * 2 * (2 * T * d * dh + T * dh);   // k and v in each of the 2 layers
                var g = c with { NKeyValueHeads = kv };
                Assert.Equal(BF(c, labels) - 2 * saved, BF(g, labels));
                Assert.True(BF(g, labels) < BF(c, labels));
            }
        // n_key_value_heads = n_heads is the basic count
        foreach (var labels in LabelSets) Assert.Equal(BF(c, labels), BF(c with { NKeyValueHeads = 4 }, labels));
    }

    [Fact]
    public void Local_attention_counts_only_the_windows_pairs()
    {
        var c = Basic();
        long H = c.NHeads, dh = c.DHead;
        long perPair = H * (2 * dh + 1) + 4 * H + H * 2 * dh;   // score, softmax, z
        foreach (int window in new[] { 1, 2, 3 })
            foreach (string types in new[] { "local,global", "global,local", "local,local" })
            {
                var loc = c with { AttnTypes = types, WindowSize = window };
                foreach (var labels in LabelSets)
                {
                    long T = labels.Length, dropped = 0;
                    if (types.StartsWith("local"))
                        for (int t = 0; t < T; t++) dropped += Math.Max(0, t + 1 - window);
                    if (types.EndsWith("local"))
                        for (int t = 0; t < T; t++) if (labels[t] >= 0) dropped += Math.Max(0, t + 1 - window);
                    Assert.Equal(BF(c, labels) - dropped * perPair, BF(loc, labels));
                    Assert.True(BF(loc, labels) <= BF(c, labels));
                    if (types.StartsWith("local") && T > window) Assert.True(BF(loc, labels) < BF(c, labels));
                }
            }
    }

    [Theory]
    [InlineData(ActKind.Gelu)]
    [InlineData(ActKind.GeluNew)]
    [InlineData(ActKind.GeluFast)]
    [InlineData(ActKind.GeluPytorchTanh)]
    [InlineData(ActKind.Silu)]
    public void Every_activation_is_one_FLOP_per_element_like_ReLU(ActKind act)
    {
        var c = Basic();
        foreach (var labels in LabelSets) Assert.Equal(BF(c, labels), BF(c with { Act = act }, labels));
    }

    [Fact]
    public void Parallel_attention_and_MLP_and_the_scale_options_leave_the_count_alone()
    {
        var c = Basic();
        foreach (var labels in LabelSets)
        {
            Assert.Equal(BF(c, labels), BF(c with { ParallelAttnMlp = true }, labels));
            Assert.Equal(BF(c, labels), BF(c with { UseAttnScale = false }, labels));
            Assert.Equal(BF(c, labels), BF(c with { AttnScale = 3.0 }, labels));
            Assert.Equal(BF(c, labels), BF(c with { ScaleAttnByInverseLayerIdx = true }, labels));
        }
    }

    [Fact]
    public void Every_family_has_a_positive_count_and_forward_is_at_least_brute_force()
    {
        foreach (var (name, cfg) in Families.Table)
        {
            var c = cfg.Validated();
            foreach (var labels in LabelSets.Where(l => l.Length <= c.NCtx))
            {
                long p = labels.Count(y => y >= 0);
                Assert.True(Flops.BruteForce(c, labels) > 0, name);
                Assert.True(Flops.Forward(c, labels.Length, (int)p) >= Flops.BruteForce(c, labels), name);
            }
        }
    }
}
