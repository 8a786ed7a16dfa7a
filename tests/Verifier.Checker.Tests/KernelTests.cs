using System.Text.Json.Nodes;
using FsCheck;
using FsCheck.Xunit;
using Verifier.Bounds;
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
        int rows = 1 + r.NextInt(4), n = 1 + r.NextInt(12), k = 1 + r.NextInt(r.NextInt(2) == 0 ? 5 : 40);   // pairs of rows, wide column blocks
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

    /// <summary>The register-blocked kernel over wide rows (several vectors of columns per pass, then the scalar tail), with
    /// midpoint–radius weights as in the attention mix p·V: the exact product at points of both boxes is enclosed.</summary>
    [Property(MaxTest = 300)]
    public bool The_blocked_product_with_interval_weights_encloses_every_exact_product(ulong seed)
    {
        var r = new Rng(seed);
        int n = 1 + r.NextInt(9), k = 1 + r.NextInt(40);
        var wm = Enumerable.Range(0, n * k).Select(_ => Adversarial.Value(r)).ToArray();
        var wr = Enumerable.Range(0, n * k).Select(_ => r.NextInt(2) == 0 ? 0 : Adversarial.Radius(r)).ToArray();
        var b = Enumerable.Range(0, k).Select(_ => Adversarial.Value(r)).ToArray();
        var m = Enumerable.Range(0, n).Select(_ => r.NextInt(5) == 0 ? 0 : Adversarial.Value(r)).ToArray();
        var rad = Enumerable.Range(0, n).Select(i => m[i] == 0 && r.NextInt(2) == 0 ? 0 : Adversarial.Radius(r)).ToArray();
        var ym = new double[k]; var yr = new double[k];
        try { Kernel.Product(m, rad, 1, n, wm, wm.Select(Math.Abs).ToArray(), 0, k, b, 0, ym, yr, wr); }
        catch (CheckFailure) { return true; }
        for (int trial = 0; trial < 3; trial++)
        {
            var x = Enumerable.Range(0, n).Select(i => Adversarial.Point(r, m[i], rad[i])).ToArray();
            for (int j = 0; j < k; j++)
            {
                var exact = Rational.Of(b[j]);
                for (int i = 0; i < n; i++) exact += x[i] * Adversarial.Point(r, wm[i * k + j], wr[i * k + j]);
                if (!Adversarial.Within(exact, ym[j], yr[j])) return false;
            }
        }
        return true;
    }

    /// <summary>The checker's CeUpper is the upper end of Forward.Ce on the logits' intervals, bit for bit, and its flag is
    /// Forward.Certain.</summary>
    [Property(MaxTest = 400)]
    public bool The_checkers_CeUpper_is_the_interval_cross_entropys_upper_end(ulong seed)
    {
        var r = new Rng(seed);
        int V = 1 + r.NextInt(12), y = r.NextInt(V);
        var lm = Enumerable.Range(0, V).Select(_ => (r.NextInt(2) == 0 ? 1 : 40) * (r.NextDouble() * 2 - 1)).ToArray();
        var lr = Enumerable.Range(0, V).Select(_ => r.NextInt(3) == 0 ? 0 : r.NextDouble() * 0.5).ToArray();
        var z = Enumerable.Range(0, V).Select(i => Kernel.Interval(lm[i], lr[i])).ToArray();
        var (ce, certain) = BlockForward.CeUpper(lm, lr, y);
        return ce.CompareTo(Forward.Ce(z, y).Hi) == 0 && certain == Forward.Certain(Forward.Diffs(z, y));
    }

    /// <summary>The checker's last layer at the labelled positions only certifies the same bound, bit for bit, as at
    /// every position (proofs/BF-brute-force.md, "Only labelled positions in the last layer").</summary>
    [Property(MaxTest = 10)]
    public bool The_checkers_last_layer_at_labelled_positions_only_gives_the_same_bound(PositiveInt seed)
    {
        using var world = new RandomWorld((ulong)seed.Get, attnOnly: seed.Get % 2 == 0, layers: 1 + seed.Get % 2);
        var fast = new BlockForward(world.Model);
        var all = new BlockForward(world.Model) { AllPositions = true };
        var work = new BlockForward.Work(world.Model.Config);
        foreach (var seq in world.Data.Sequences)
        {
            var (a, ea) = fast.Sequence(seq, work);
            var (b, eb) = all.Sequence(seq);
            if (a.CompareTo(b) != 0 || ea != eb) return false;
        }
        return true;
    }

    /// <summary>A BFB claim equal to the checker's own certified block sum is accepted; one ulp below it is refused.</summary>
    [Fact]
    public void A_BFB_claim_lowered_by_one_ulp_below_the_certified_sum_is_rejected()
    {
        using var world = new RandomWorld(7, layers: 2);
        var t = JsonNode.Parse(File.ReadAllText(world.Bound(Strategies.BruteForce, computeTrueLoss: false).Transcript))!.AsObject();
        var step = t["steps"]!.AsArray().First(s => s!["lemma"]!.GetValue<string>() == "BFB")!;
        int first = step["scope"]!["first"]!.GetValue<int>(), end = step["scope"]!["end"]!.GetValue<int>();
        var block = new BlockForward(world.Model);
        double certified = 0;
        for (int i = first; i < end; i++) certified = U.Add(certified, block.Sequence(world.Data.Sequences[i]).Loss);
        var forger = new Forger(world, null!);
        step["claim"]!["loss_sum"] = certified;
        var ok = forger.Check(t);
        Assert.True(ok.Accepted, ok.Reason);
        step["claim"]!["loss_sum"] = Math.BitDecrement(certified);
        var v = forger.Check(t);
        Assert.False(v.Accepted);
        Assert.Equal("BFB", v.Lemma);
        Assert.Contains("below the certified", v.Reason);
    }
}
