using FsCheck;
using FsCheck.Xunit;
using Verifier.Bounds;
using Verifier.Core;
using Verifier.TestSupport;

namespace Verifier.Bounds.Tests;

/// <summary>Lemma R2 (proofs/R2-midpoint-radius.md) against exact rational arithmetic.</summary>
public class MidRadTests
{
    /// <summary>y = x·W + b for a point x of the box lies within ρ of ŷ, for adversarial magnitudes; an overflow is refused,
    /// never returned as a finite enclosure.</summary>
    [Property(MaxTest = 400)]
    public bool Point_matrix_product_encloses_the_exact_product_at_points_of_the_box(ulong seed)
    {
        var r = new Rng(seed);
        int n = 1 + r.NextInt(12), k = 1 + r.NextInt(r.NextInt(2) == 0 ? 4 : 40);   // wide k: the register-blocked columns
        var w = Enumerable.Range(0, n * k).Select(_ => Adversarial.Value(r)).ToArray();
        var b = Enumerable.Range(0, k).Select(_ => Adversarial.Value(r)).ToArray();
        var m = Enumerable.Range(0, n).Select(_ => Adversarial.Value(r)).ToArray();
        var rad = Enumerable.Range(0, n).Select(_ => Adversarial.Radius(r)).ToArray();
        var pm = new PointMatrix(n, k, (i, j) => w[i * k + j], j => b[j]);
        var ym = new double[k]; var yr = new double[k];
        try { pm.Apply(m, rad, ym, yr); }
        catch (IntervalOverflowException) { return true; }
        if (!ym.Concat(yr).All(double.IsFinite)) return false;
        if (r.NextInt(4) == 0)                                          // an exact zero input is skipped
        {
            m[0] = 0; rad[0] = 0;
            try { pm.Apply(m, rad, ym, yr); }
            catch (IntervalOverflowException) { return true; }
        }
        for (int trial = 0; trial < 4; trial++)
        {
            var x = Enumerable.Range(0, n).Select(i => Adversarial.Point(r, m[i], rad[i])).ToArray();
            for (int j = 0; j < k; j++)
            {
                var exact = Rational.Of(b[j]);
                for (int i = 0; i < n; i++) exact += x[i] * Rational.Of(w[i * k + j]);
                if (!Adversarial.Within(exact, ym[j], yr[j])) return false;
            }
        }
        return true;
    }

    /// <summary>The bound holds for any summation order: the midpoint summed backwards (or pairwise) is still within ρ
    /// computed by the kernel's own order, so a BLAS or TorchSharp midpoint would be covered too.</summary>
    [Property(MaxTest = 300)]
    public bool The_radius_covers_the_midpoint_in_any_summation_order(ulong seed)
    {
        var r = new Rng(seed);
        int n = 2 + r.NextInt(30);
        var w = Enumerable.Range(0, n).Select(_ => Adversarial.Value(r)).ToArray();
        var m = Enumerable.Range(0, n).Select(_ => Adversarial.Value(r)).ToArray();
        var pm = new PointMatrix(n, 1, (i, _) => w[i], null);
        var ym = new double[1]; var yr = new double[1];
        try { pm.Apply(m, new double[n], ym, yr); }
        catch (IntervalOverflowException) { return true; }
        double back = 0; for (int i = n - 1; i >= 0; i--) back += m[i] * w[i];
        double fma = 0; for (int i = 0; i < n; i++) fma = Math.FusedMultiplyAdd(m[i], w[i], fma);
        var exact = new Rational(0, 1);
        for (int i = 0; i < n; i++) exact += Rational.Of(m[i]) * Rational.Of(w[i]);
        // R2: ρ (from Ŝ in the kernel's order) bounds |exact − ŝ| for ŝ summed in every order.
        return Adversarial.Within(exact, ym[0], yr[0])
               && (!double.IsFinite(back) || Adversarial.Within(exact, back, yr[0]))
               && (!double.IsFinite(fma) || Adversarial.Within(exact, fma, yr[0]));
    }

    [Fact]
    public void Catastrophic_cancellation_and_subnormals_are_enclosed()
    {
        // 1e16 + 1 − 1e16: the float64 sum is 0 or 2; the exact value 1 must lie in the enclosure.
        var pm = new PointMatrix(3, 1, (i, _) => new[] { 1e16, 1.0, -1e16 }[i], null);
        var ym = new double[1]; var yr = new double[1];
        pm.Apply([1, 1, 1], [0, 0, 0], ym, yr);
        Assert.True(Adversarial.Within(new Rational(1, 1), ym[0], yr[0]));
        // Products that underflow to 0: the exact 2⁻¹⁰⁷⁴·2⁻¹ ≠ 0 is still enclosed.
        var tiny = new PointMatrix(1, 1, (_, _) => double.Epsilon, null);
        tiny.Apply([0.5], [0], ym, yr);
        Assert.True(yr[0] > 0 && Adversarial.Within(Rational.Of(double.Epsilon) * new Rational(1, 2), ym[0], yr[0]));
        // Overflow is refused.
        var huge = new PointMatrix(2, 1, (_, _) => 1e300, null);
        Assert.Throws<IntervalOverflowException>(() => huge.Apply([1e300, 1e300], [0, 0], ym, yr));
    }

    /// <summary>The fast kernel's per-sequence bound agrees with the scalar R1 evaluation (BruteForceStrategy.Sequence) up to the
    /// rounding slack: both enclose the same real number, and neither is much looser than the other.</summary>
    [Property(MaxTest = 12)]
    public bool Fast_and_scalar_brute_force_certify_the_same_loss_up_to_rounding(PositiveInt seed)
    {
        using var f = new RandomWorld((ulong)seed.Get, attnOnly: seed.Get % 2 == 0, layers: 1 + seed.Get % 2);
        var fast = new FastForward(f.Model);
        var scalar = new IntervalModel(f.Model);
        var s = new FastForward.Scratch(f.Model.Config);
        foreach (var seq in f.Data.Sequences)
        {
            double a = fast.Sequence(seq, s).LossSum, b = BruteForceStrategy.Sequence(scalar, seq).LossSum;
            if (Math.Abs(a - b) > 1e-9 * Math.Max(1, Math.Abs(b))) return false;
        }
        return true;
    }

    /// <summary>The last layer at the labelled positions only gives the same bound, bit for bit, as at every position
    /// (proofs/BF-brute-force.md, "Only labelled positions in the last layer").</summary>
    [Property(MaxTest = 12)]
    public bool The_last_layer_at_labelled_positions_only_certifies_the_same_bound_as_at_every_position(PositiveInt seed)
    {
        using var f = new RandomWorld((ulong)seed.Get, attnOnly: seed.Get % 2 == 0, layers: 1 + seed.Get % 2);
        var fast = new FastForward(f.Model);
        var all = new FastForward(f.Model) { AllPositions = true };
        var s = new FastForward.Scratch(f.Model.Config);
        foreach (var seq in f.Data.Sequences)
        {
            var (a, ea) = fast.Sequence(seq, s);
            var (b, eb) = all.Sequence(seq, s);
            if (a.CompareTo(b) != 0 || ea != eb) return false;
        }
        return true;
    }

    /// <summary>CeUpper from midpoints and radii is the upper end of IntervalModel.CrossEntropy on the logits' intervals, bit
    /// for bit, and its certified-correct flag is ACC's test; both enclose the exact CE at points of the box.</summary>
    [Property(MaxTest = 400)]
    public bool CeUpper_is_the_interval_cross_entropys_upper_end(ulong seed)
    {
        var r = new Rng(seed);
        int V = 1 + r.NextInt(12), y = r.NextInt(V);
        var lm = Enumerable.Range(0, V).Select(_ => (r.NextInt(2) == 0 ? 1 : 40) * (r.NextDouble() * 2 - 1)).ToArray();
        var lr = Enumerable.Range(0, V).Select(_ => r.NextInt(3) == 0 ? 0 : r.NextDouble() * 0.5).ToArray();
        var z = Enumerable.Range(0, V).Select(i => MidRad.ToIv(lm[i], lr[i])).ToArray();
        var (ce, certain) = FastForward.CeUpper(lm, lr, y);
        var want = IntervalModel.CrossEntropy(z, y).Hi;
        bool acc = IntervalModel.MaxUpper(IntervalModel.Differences(z, y)) < 0;
        // The exact CE at the midpoints (a point of the box), in high precision via logsumexp in double with a margin.
        double lse = Math.Log(lm.Select(x => Math.Exp(x - lm.Max())).Sum()) + lm.Max() - lm[y];
        return ce.CompareTo(want) == 0 && certain == acc && lse <= ce * (1 + 1e-12) + 1e-12;
    }
}
