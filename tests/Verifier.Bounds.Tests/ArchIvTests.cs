using FsCheck.Xunit;
using Verifier.Bounds;
using Verifier.Core;

namespace Verifier.Bounds.Tests;

/// <summary>The enclosure rules of proofs/R3G-generator-enclosures.md, each against the exact function (ReferenceForward,
/// Activation) at random points of random boxes. The float64 reference differs from the exact real value by a few
/// ulps, hence the 1e-12 tolerance; a wrong rule misses by far more.</summary>
public class ArchIvTests
{
    const double Tol = 1e-12;

    static bool Holds(Iv box, double x) => box.Lo - Tol * (1 + Math.Abs(x)) <= x && x <= box.Hi + Tol * (1 + Math.Abs(x));

    /// <summary>A random box per coordinate: centre in [−c, c], radius in [0, r] (a point box one time in four).</summary>
    static Iv[] RandomBox(Rng r, int d, double c, double rad) => Enumerable.Range(0, d).Select(_ =>
    {
        double m = (2 * r.NextDouble() - 1) * c, w = r.NextInt(4) == 0 ? 0 : r.NextDouble() * rad;
        return new Iv(m - w, m + w);
    }).ToArray();

    static double Inside(Rng r, Iv b) => r.NextInt(5) switch { 0 => b.Lo, 1 => b.Hi, _ => b.Lo + r.NextDouble() * (b.Hi - b.Lo) };

    [Property(MaxTest = 300)]
    public void Normalisation_encloses_LayerNorm_and_RMSNorm_of_every_point_in_the_box(ulong seed)
    {
        var r = new Rng(seed);
        var kind = new[] { NormKind.LN, NormKind.LNPre, NormKind.RMS, NormKind.RMSPre }[r.NextInt(4)];
        int d = 1 + r.NextInt(7);
        double eps = new[] { 1e-5, 1e-6, 0.1, 1e-12 }[r.NextInt(4)];
        var c = ModelConfig.Create(d, 1, 1, 1, 1, 2, 2, 2, attnOnly: false) with { Normalization = kind, Eps = eps };
        var w = ModelWeights.Random(c.Validated(), seed, std: 0.5);
        var box = RandomBox(r, d, 3, r.NextInt(2) == 0 ? 0.05 : 2);
        var prefix = "blocks.0.ln1.";
        var y = ArchIv.Norm(box, kind, eps, kind is NormKind.LN or NormKind.RMS ? w[prefix + "w"].Data : null, kind == NormKind.LN ? w[prefix + "b"].Data : null);
        for (int k = 0; k < 20; k++)
        {
            var x = new double[1, d];
            for (int i = 0; i < d; i++) x[0, i] = Inside(r, box[i]);
            var exact = ReferenceForward.Normalize(w, prefix, kind, x);
            for (int i = 0; i < d; i++) Assert.True(Holds(y[i], exact[0, i]), $"{kind} d={d} coordinate {i}: {exact[0, i]:R} not in {y[i]}");
        }
        if (kind is NormKind.LNPre or NormKind.RMSPre)
            foreach (var v in y) Assert.True(v.Lo >= -Math.Sqrt(d) - 1e-9 && v.Hi <= Math.Sqrt(d) + 1e-9, $"{v} exceeds ±√{d}");
    }

    /// <summary>N ∩ N′ (the generator's mean-value form, as the checker's) is never wider than rule N alone, and on narrow
    /// boxes of d = 32 it is clearly narrower; the property above checks that it still encloses.</summary>
    [Fact]
    public void The_mean_value_form_narrows_LayerNorm_on_narrow_boxes_and_never_widens_it()
    {
        var r = new Rng(11);
        double ratio = 0; int n = 0;
        for (int k = 0; k < 50; k++)
        {
            var box = Enumerable.Range(0, 32).Select(_ => { double m = 2 * r.NextDouble() - 1, w = 1e-6 * r.NextDouble(); return new Iv(m - w, m + w); }).ToArray();
            var both = ArchIv.Norm(box, NormKind.LNPre, 1e-5, null, null, meanValue: true);
            var alone = ArchIv.Norm(box, NormKind.LNPre, 1e-5, null, null, meanValue: false);
            for (int i = 0; i < 32; i++)
            {
                Assert.True(both[i].Lo >= alone[i].Lo && both[i].Hi <= alone[i].Hi, $"{both[i]} not inside {alone[i]}");
                ratio += both[i].Width / alone[i].Width; n++;
            }
        }
        Assert.True(ratio / n < 0.9, $"mean width ratio {ratio / n}");
    }

    [Fact]
    public void LayerNorm_of_a_point_is_a_point_up_to_rounding()
    {
        // Centring as a linear map counts each coordinate once: a point input gives a point enclosure, not a widened one.
        var x = new[] { 1.0, -2.0, 0.5, 3.25 }.Select(Iv.Point).ToArray();
        foreach (var kind in new[] { NormKind.LNPre, NormKind.RMSPre })
            foreach (var v in ArchIv.Norm(x, kind, 1e-5, null, null)) Assert.True(v.Width < 1e-14, $"{kind}: {v}");
    }

    [Property(MaxTest = 300)]
    public void Every_activation_encloses_its_exact_value_at_every_point_of_the_box(ulong seed)
    {
        var r = new Rng(seed);
        foreach (var kind in Enum.GetValues<ActKind>())
        {
            double scale = new[] { 0.5, 3, 12, 40 }[r.NextInt(4)];
            var box = RandomBox(r, 1, scale, r.NextInt(2) == 0 ? 0.01 * scale : scale)[0];
            var y = ArchIv.Act(kind, box);
            Assert.True(y.Lo <= y.Hi, $"{kind} {box}: empty {y}");
            for (int k = 0; k < 30; k++)
            {
                double x = Inside(r, box), exact = Activation.Apply(kind, x);
                Assert.True(Holds(y, exact), $"{kind}({x:R}) = {exact:R} not in {y} (box {box})");
            }
        }
    }

    [Theory]
    [InlineData(ActKind.Gelu)]
    [InlineData(ActKind.GeluNew)]
    [InlineData(ActKind.GeluFast)]
    [InlineData(ActKind.GeluPytorchTanh)]
    [InlineData(ActKind.Silu)]
    public void Smooth_activations_of_a_point_are_tight_and_the_lower_cut_is_below_the_minimum(ActKind kind)
    {
        for (double x = -8; x <= 8; x += 0.01)
        {
            var y = ArchIv.Act(kind, Iv.Point(x));
            Assert.True(y.Width <= 1e-12 * (1 + Math.Abs(x)), $"{kind}({x}): {y}");
            Assert.True(Activation.Apply(kind, x) > (kind == ActKind.Silu ? ArchIv.SiluMin : ArchIv.GeluMin));
        }
        // A wide box around the minimum: the cut, not the product, gives the lower end.
        Assert.Equal(kind == ActKind.Silu ? ArchIv.SiluMin : ArchIv.GeluMin, ArchIv.Act(kind, new Iv(-3, 3)).Lo);
    }

    [Property(MaxTest = 200)]
    public void Rotation_encloses_cos_and_sin_of_the_rotary_angle(ulong seed)
    {
        var r = new Rng(seed);
        int dim = 2 * (1 + r.NextInt(8));
        var c = ModelConfig.Create(8, 1, 16, 4, 1, 4096, 3, 3, attnOnly: false) with { Rotary = true, RotaryDim = dim, RotaryBase = new[] { 10000.0, 500, 1e6 }[r.NextInt(3)] };
        int t = r.NextInt(4096), i = r.NextInt(dim / 2);
        double theta = ReferenceForward.RotaryAngle(c, t, i);
        var (cos, sin) = ArchIv.Rotation(theta);
        // The exact cosine of the float64 θ, from Math.Cos to within an ulp or so; δ covers it with room for θ's own error.
        Assert.True(cos.Contains(Math.Cos(theta)) && sin.Contains(Math.Sin(theta)), $"θ={theta}: {cos}, {sin}");
        Assert.True(cos.Lo >= -1 && cos.Hi <= 1 && sin.Lo >= -1 && sin.Hi <= 1);
        double delta = Math.ScaleB(1 + Math.Abs(theta), -40);
        Assert.True(cos.Width <= 2.01 * delta && sin.Width <= 2.01 * delta);
        // θ computed otherwise (t·base^(−2i/dim)) differs by far less than δ.
        double other = t * Math.Pow(c.RotaryBase, -(2.0 * i) / dim);
        Assert.True(cos.Contains(Math.Cos(other)) && sin.Contains(Math.Sin(other)), $"θ'={other}");
    }

    [Fact]
    public void The_divisor_is_each_scale_option()
    {
        var c = ModelConfig.Create(8, 2, 5, 4, 3, 4, 3, 3, attnOnly: false);
        Assert.True(ArchIv.Divisor(c, 0).Contains(Math.Sqrt(5)) && ArchIv.Divisor(c, 0).Width < 1e-14);
        Assert.True(ArchIv.Divisor(c with { AttnScale = 3.0 }, 2).Contains(3) && ArchIv.Divisor(c with { AttnScale = 3.0 }, 2).Width < 1e-14);
        Assert.True(ArchIv.Divisor(c with { ScaleAttnByInverseLayerIdx = true }, 2).Contains(3 * Math.Sqrt(5)));
        var d = ArchIv.Divisor(c with { UseAttnScale = false, ScaleAttnByInverseLayerIdx = true }, 2);
        Assert.True(d.Contains(3) && d.Width < 1e-14 && !d.Contains(3 * Math.Sqrt(5)));
    }

    [Fact]
    public void An_overflowing_softmax_sum_gives_a_finite_enclosure_instead_of_a_refusal()
    {
        // Scores 800 apart: e^{σ_1 − σ_0} overflows float64. The true p = (e^{−800}/(1 + e^{−800}), 1/(1 + e^{−800})).
        var p = ArchForward.Softmax([new Iv(-1, 1), new Iv(799, 801)]);
        Assert.True(p[0].Lo == 0 && p[0].Hi < 1e-300, $"{p[0]}");
        Assert.True(p[1].Contains(1) && p[1].Lo > 0.999, $"{p[1]}");
        var b = IntervalModel.Softmax([new Iv(-1, 1), new Iv(799, 801)]);   // the basic path (tables, exhaustive) too
        Assert.True(b[0].Lo == 0 && b[0].Hi < 1e-300 && b[1].Contains(1), $"{b[0]} {b[1]}");
        // Finite sums: the same enclosure as the basic path's.
        var r = new Rng(5);
        for (int k = 0; k < 100; k++)
        {
            var sigma = RandomBox(r, 1 + r.NextInt(5), 10, 3);
            Assert.Equal(IntervalModel.Softmax(sigma), ArchForward.Softmax(sigma));
        }
    }

    [Property]
    public void Non_basic_claims_carry_the_larger_slack(double x)
    {
        if (!double.IsFinite(x) || x < 0 || x > 1e300) return;
        var basic = ModelConfig.Create(4, 1, 2, 4, 1, 3, 3, 3, attnOnly: false);
        var ln = basic with { Normalization = NormKind.LN };
        Assert.Equal(Claim.Slack(x), ArchIv.Slack(basic, x));
        Assert.True(ArchIv.Slack(ln, x) >= x * (1 + 1.0 / (1 << 24)) + 1.0 / (1L << 40));
        Assert.True(ArchIv.Slack(ln, x) >= Claim.Slack(x));
    }
}
