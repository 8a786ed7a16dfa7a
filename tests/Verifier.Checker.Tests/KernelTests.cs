using FsCheck;
using FsCheck.Xunit;
using Verifier.Checker;
using Verifier.Core;
using Verifier.TestSupport;

namespace Verifier.Checker.Tests;

/// <summary>The checker's own R2 kernel (proofs/R2-midpoint-radius.md) against exact rationals.</summary>
public class KernelTests
{
    [Property(MaxTest = 400)]
    public bool The_checkers_product_encloses_the_exact_product_at_points_of_the_box(ulong seed)
    {
        var r = new Rng(seed);
        int rows = 1 + r.NextInt(3), n = 1 + r.NextInt(12), k = 1 + r.NextInt(5);
        var w = Enumerable.Range(0, n * k).Select(_ => Adversarial.Value(r)).ToArray();
        var b = Enumerable.Range(0, k).Select(_ => Adversarial.Value(r)).ToArray();
        var m = Enumerable.Range(0, rows * n).Select(_ => Adversarial.Value(r)).ToArray();
        var rad = Enumerable.Range(0, rows * n).Select(_ => Adversarial.Radius(r)).ToArray();
        var ym = new double[rows * k]; var yr = new double[rows * k];
        try { Kernel.Product(m, rad, rows, n, w, w.Select(Math.Abs).ToArray(), 0, k, b, 0, ym, yr); }
        catch (CheckFailure) { return true; }
        for (int row = 0; row < rows; row++)
        {
            var x = Enumerable.Range(0, n).Select(i => Adversarial.Point(r, m[row * n + i], rad[row * n + i])).ToArray();
            for (int j = 0; j < k; j++)
            {
                var exact = Rational.Of(b[j]);
                for (int i = 0; i < n; i++) exact += x[i] * Rational.Of(w[i * k + j]);
                if (!Adversarial.Within(exact, ym[row * k + j], yr[row * k + j])) return false;
            }
        }
        return true;
    }

    [Property(MaxTest = 400)]
    public bool The_checkers_dot_of_two_boxes_encloses_every_exact_product(ulong seed)
    {
        var r = new Rng(seed);
        int n = 1 + r.NextInt(10);
        var xm = Enumerable.Range(0, n).Select(_ => Adversarial.Value(r)).ToArray();
        var xr = Enumerable.Range(0, n).Select(_ => Adversarial.Radius(r)).ToArray();
        var ym = Enumerable.Range(0, n).Select(_ => Adversarial.Value(r)).ToArray();
        var yr = Enumerable.Range(0, n).Select(_ => Adversarial.Radius(r)).ToArray();
        double m, rho;
        try { (m, rho) = Kernel.Dot(xm, xr, ym, yr); }
        catch (CheckFailure) { return true; }
        for (int trial = 0; trial < 4; trial++)
        {
            var exact = new Rational(0, 1);
            for (int i = 0; i < n; i++) exact += Adversarial.Point(r, xm[i], xr[i]) * Adversarial.Point(r, ym[i], yr[i]);
            if (!Adversarial.Within(exact, m, rho)) return false;
        }
        return true;
    }

    [Fact]
    public void Cancellation_underflow_and_overflow_in_the_checkers_kernel()
    {
        var ym = new double[1]; var yr = new double[1];
        Kernel.Product([1, 1, 1], [0, 0, 0], 1, 3, [1e16, 1, -1e16], [1e16, 1, 1e16], 0, 1, null, 0, ym, yr);
        Assert.True(Adversarial.Within(new Rational(1, 1), ym[0], yr[0]));
        Kernel.Product([0.5], [0], 1, 1, [double.Epsilon], [double.Epsilon], 0, 1, null, 0, ym, yr);
        Assert.True(Adversarial.Within(Rational.Of(double.Epsilon) * new Rational(1, 2), ym[0], yr[0]));
        Assert.Throws<CheckFailure>(() => Kernel.Product([1e300, 1e300], [0, 0], 1, 2, [1e300, 1e300], [1e300, 1e300], 0, 1, null, 0, ym, yr));
    }
}
