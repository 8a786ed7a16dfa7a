using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Verifier.Bounds;
using Verifier.TestSupport;

namespace Verifier.Bounds.Tests;

public class IntervalTests
{
    static bool Encloses(Iv r, Rational exact) => Rational.Of(r.Lo) <= exact && exact <= Rational.Of(r.Hi);
    static Iv Make(NormalFloat a, NormalFloat b) => new(Math.Min(a.Get, b.Get), Math.Max(a.Get, b.Get));

    [Property(MaxTest = 500)]
    public bool Sum_difference_and_product_enclose_the_exact_result_at_every_corner(NormalFloat a, NormalFloat b, NormalFloat c, NormalFloat d)
    {
        Iv x = Make(a, b), y = Make(c, d);
        var corners = new[] { (x.Lo, y.Lo), (x.Lo, y.Hi), (x.Hi, y.Lo), (x.Hi, y.Hi) };
        return corners.All(p =>
            Encloses(x + y, Rational.Of(p.Item1) + Rational.Of(p.Item2)) &&
            Encloses(x - y, Rational.Of(p.Item1) - Rational.Of(p.Item2)) &&
            Encloses(x * y, Rational.Of(p.Item1) * Rational.Of(p.Item2)));
    }

    [Property(MaxTest = 500)]
    public bool Quotient_encloses_the_exact_result(NormalFloat a, NormalFloat b, PositiveInt c, PositiveInt d)
    {
        Iv x = Make(a, b), y = new(Math.Min(c.Get, d.Get) / 7.0, Math.Max(c.Get, d.Get) / 7.0 + 1e-3);
        return new[] { x.Lo, x.Hi }.All(p => new[] { y.Lo, y.Hi }.All(q => Encloses(x / y, Rational.Of(p) / Rational.Of(q))));
    }

    [Property(MaxTest = 500)]
    public bool Weighted_point_product_encloses_the_exact_result(NormalFloat w, NormalFloat a, NormalFloat b)
    {
        var x = Make(a, b);
        var r = w.Get * x;
        return Encloses(r, Rational.Of(w.Get) * Rational.Of(x.Lo)) && Encloses(r, Rational.Of(w.Get) * Rational.Of(x.Hi));
    }

    [Property(MaxTest = 300)]
    public bool Exp_log_and_sqrt_enclose_their_float64_values_with_room(NormalFloat a)
    {
        double x = Math.Clamp(a.Get, -700, 700);
        var e = Iv.Exp(Iv.Point(x));
        double p = Math.Abs(a.Get) + 1e-300;
        var l = Iv.Log(Iv.Point(p));
        var s = Iv.Sqrt(Iv.Point(p));
        // Each end lies at least 3 ulps beyond the libm value (R1: libm error ≤ 1 ulp is covered).
        return e.Lo < Math.Exp(x) && Math.Exp(x) < e.Hi && l.Lo < Math.Log(p) && Math.Log(p) < l.Hi && s.Lo < Math.Sqrt(p) && Math.Sqrt(p) < s.Hi;
    }

    [Fact]
    public void Stable_cross_entropy_matches_the_direct_formula_and_never_overflows()
    {
        var z = new[] { Iv.Point(1), Iv.Point(3), Iv.Point(-2) };
        double direct = Math.Log(Math.Exp(1) + Math.Exp(3) + Math.Exp(-2)) - 1;
        var ce = IntervalModel.CrossEntropy(z, 0);
        Assert.True(ce.Lo <= direct && direct <= ce.Hi && ce.Width < 1e-12);
        var huge = IntervalModel.CrossEntropy([Iv.Point(0), new Iv(-1e6, 1e6)], 0);
        Assert.True(double.IsFinite(huge.Hi) && huge.Hi >= 1e6);
    }

    [Fact]
    public void Operator_norm_bound_is_at_least_the_largest_singular_value_it_must_cover()
    {
        // A = [[3, 0], [4, 5]]: singular values √45 ± √20 → largest = 3√5 ≈ 6.708.
        double bound = OperatorNorms.Upper([3, 0, 4, 5], 0, 2, 2);
        Assert.True(bound >= 3 * Math.Sqrt(5));
        Assert.True(bound <= Math.Sqrt(50) + 1e-12);   // ≤ Frobenius
    }

    /// <summary>A score gap beyond exp's float64 range leaves the losing key's probability in [0, tiny] instead of
    /// refusing the bound (the real softmax is finite; only its float64 sum overflows).</summary>
    [Fact]
    public void Softmax_encloses_a_gap_that_overflows_exp()
    {
        var p = IntervalModel.Softmax([Iv.Point(0), Iv.Point(800), new Iv(2000, 2001)]);
        Assert.Equal(0, p[0].Lo); Assert.True(p[0].Hi <= 1e-300);
        Assert.Equal(0, p[1].Lo); Assert.True(p[1].Hi <= 1e-300);
        Assert.True(p[2].Lo <= 1 && p[2].Hi >= 1 - 1e-12, p[2].ToString());
        var q = IntervalModel.Softmax([Iv.Point(0), Iv.Point(709.5)]);   // e^709.5 is finite, e^(709.5 + ulp) near the edge
        Assert.True(q[0].Lo >= 0 && q[0].Hi < 1e-300 && q[1].Hi >= 1 - 1e-300);
    }
}
