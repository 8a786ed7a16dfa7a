using Verifier.Core;

namespace Verifier.Bounds;

/// <summary>The enclosures of the architecture options beyond the basic model (proofs/R3G-generator-enclosures.md, the
/// shared rules of proofs/R3-architectures.md): normalisation (N), activations (A), rotary cos/sin (P), the attention
/// divisor (S), and the claim slack for non-basic models. Each takes boxes (<see cref="Iv"/>) and returns a box that
/// holds the exact real value of <see cref="ReferenceForward"/>'s function for every input in the boxes, rounded
/// outward (R1).</summary>
public static class ArchIv
{
    /// <summary>The relative slack of claims for non-basic models, 2⁻²⁴ (absolute 2⁻⁴⁰ as for basic models): two
    /// independent evaluations of the longer chains of operations (normalisation, smooth activations, rotary) may
    /// differ in their last bits by more than <see cref="Claim.Relative"/>.</summary>
    public const double ArchRelative = 1.0 / (1 << 24);

    /// <summary>The claim for an upper end x: <see cref="Claim.Slack(double)"/> for a basic model, up(x·(1 + 2⁻²⁴)) + 2⁻⁴⁰
    /// for any other.</summary>
    public static double Slack(ModelConfig c, double x) =>
        c.IsBasic ? Claim.Slack(x) : Up.Add(Up.Mul(x, 1 + ArchRelative), Claim.Absolute);

    static double Down(double x, int n = 1) { for (int i = 0; i < n; i++) x = Math.BitDecrement(x); return x; }
    static double Upn(double x, int n = 1) { for (int i = 0; i < n; i++) x = Math.BitIncrement(x); return x; }
    static Iv Meet(Iv a, double lo, double hi) => new(Math.Max(a.Lo, lo), Math.Min(a.Hi, hi));

    /// <summary>Rule N. LN/LNPre centre as a linear map, C_i = (1 − 1/d)·X_i − (1/d)·Σ_{j≠i} X_j (each X_j counted
    /// once; the sums of the other coordinates from prefix and suffix sums); RMS/RMSPre: C_i = X_i. Then
    /// v = (1/d)·Σ_i C_i² (each square over its own box), S = √(v + eps), N_i = C_i / S ∩ [−√d, √d], and
    /// Y_i = N_i·w_i + b_i where the kind has w, b (<paramref name="w"/>, <paramref name="b"/> null otherwise).</summary>
    public static Iv[] Norm(Iv[] x, NormKind kind, double eps, double[]? w, double[]? b) => Norm(x, kind, eps, w, b, meanValue: true);

    /// <summary>(P x)_i = (1 − 1/d)·x_i − (1/d)·Σ_{j≠i} x_j with each x_j counted once (prefix and suffix sums).</summary>
    static Iv[] Centre(Iv[] x)
    {
        int d = x.Length;
        var inv = Iv.Point(1) / Iv.Point(d);                  // 1/d, enclosed
        var keep = Iv.Point(1) - inv;                         // 1 − 1/d
        var suffix = new Iv[d + 1];
        suffix[d] = Iv.Zero;
        for (int i = d - 1; i >= 0; i--) suffix[i] = suffix[i + 1] + x[i];
        var prefix = Iv.Zero;
        var c = new Iv[d];
        for (int i = 0; i < d; i++)
        {
            c[i] = keep * x[i] - inv * (prefix + suffix[i + 1]);
            prefix += x[i];
        }
        return c;
    }

    /// <summary>Rule N, intersected for LN/LNPre with N′ (the mean-value form of proofs/R3-architectures.md) when
    /// <paramref name="meanValue"/>: for x in the box and its point m, N_i(x) = N_i(m) + Σ_k ∂N_i/∂x_k(ξ)(x_k − m_k),
    /// ∂N_i/∂x_k = (P_ik − c_i c_k/(d(v + eps)))/√(v + eps) with c, v + eps and √(v + eps) at ξ inside rule N's enclosures.</summary>
    public static Iv[] Norm(Iv[] x, NormKind kind, double eps, double[]? w, double[]? b, bool meanValue)
    {
        if (kind == NormKind.None) return x;
        int d = x.Length;
        var dd = Iv.Point(d);
        bool centred = kind is NormKind.LN or NormKind.LNPre;
        var c = centred ? Centre(x) : (Iv[])x.Clone();
        var sq = Iv.Zero;
        for (int i = 0; i < d; i++) sq += Iv.Sq(c[i]);
        if (!sq.IsFinite) throw new IntervalOverflowException($"the mean square of a normalisation input {sq}");
        var v = sq / dd + Iv.Point(eps);                      // v + eps
        var s = Iv.Sqrt(v);
        double r = Up.Sqrt(d);                                // |c_i| ≤ √(d·v) < √d·√(v + eps)
        Iv[]? mv = null;
        if (meanValue && centred && x.Any(e => e.Lo != e.Hi))
        {
            // N′: N(m) by rule N on the point m, plus the bracket over Δ = X − m, O(d) by regrouping.
            var m = x.Select(e => Math.Clamp(e.Lo + 0.5 * (e.Hi - e.Lo), e.Lo, e.Hi)).ToArray();
            var nm = Norm(m.Select(Iv.Point).ToArray(), NormKind.LNPre, eps, null, null, meanValue: false);
            var delta = x.Select((e, k) => e - Iv.Point(m[k])).ToArray();
            var cd = Iv.Zero;
            for (int k = 0; k < d; k++) cd += c[k] * delta[k];
            var q = Iv.Point(1) / (dd * v);
            var pd = Centre(delta);
            mv = new Iv[d];
            for (int i = 0; i < d; i++) mv[i] = nm[i] + (pd[i] - c[i] * q * cd) / s;
        }
        var y = new Iv[d];
        for (int i = 0; i < d; i++)
        {
            var n = Meet(c[i] / s, -r, r);
            if (mv is not null)
            {
                var both = Meet(n, mv[i].Lo, mv[i].Hi);
                if (both.Lo > both.Hi) throw new InvalidOperationException("rule N and its mean-value form N′ gave disjoint enclosures (an internal error)");
                n = both;
            }
            if (w is not null) n = w[i] * n;
            if (b is not null) n += b[i];
            y[i] = n;
        }
        return y;
    }

    /// <summary>A global Lipschitz constant of the activation (proofs/T3-normalised-tables.md, "Slopes"): |act'| ≤ 1 for relu,
    /// 1.13 for every gelu (max 1.12890, at √2 for the erf form), 1.11 for silu (max 1.09984).</summary>
    public static double Lipschitz(ActKind kind) => kind switch { ActKind.Relu => 1, ActKind.Silu => 1.11, _ => 1.13 };

    /// <summary>Lower ends below the minimum of every gelu variant (≈ −0.1700) and of silu (≈ −0.2785).</summary>
    public const double GeluMin = -0.18, SiluMin = -0.28;

    /// <summary>Φ(x) within 2⁻⁴⁵ absolute (Activation.Phi's series and continued fraction are accurate to about 1e-15).</summary>
    public const double PhiError = 1.0 / (1L << 45);

    /// <summary>Rule A: the activation <paramref name="kind"/> over the box <paramref name="x"/>.</summary>
    public static Iv Act(ActKind kind, Iv x)
    {
        switch (kind)
        {
            case ActKind.Relu: return Iv.Relu(x);
            case ActKind.Gelu:
            {
                // x·Φ(x) ∈ [a, b]·[Φ(a), Φ(b)] (Φ increasing), Φ's float64 error covered by 2⁻⁴⁵.
                var phi = new Iv(Math.Max(0, Down(Activation.Phi(x.Lo) - PhiError)), Math.Min(1, Upn(Activation.Phi(x.Hi) + PhiError)));
                var r = x * phi;
                return new Iv(Math.Max(r.Lo, GeluMin), r.Hi);
            }
            case ActKind.GeluNew or ActKind.GeluPytorchTanh or ActKind.GeluFast:
            {
                // u increasing: U = [u(a), u(b)], each end evaluated in interval arithmetic; tanh 4 ulps outward.
                var u = new Iv(TanhInner(kind, Iv.Point(x.Lo)).Lo, TanhInner(kind, Iv.Point(x.Hi)).Hi);
                var t = new Iv(Math.Max(-1, Down(Math.Tanh(u.Lo), 4)), Math.Min(1, Upn(Math.Tanh(u.Hi), 4)));
                var r = 0.5 * (x * (Iv.Point(1) + t));
                return new Iv(Math.Max(r.Lo, GeluMin), r.Hi);
            }
            case ActKind.Silu:
            {
                // σ(x) = 1/(1 + e^{−x}); an infinite e^{−x} end gives σ's lower end 0 (its true value is in (0, 1)).
                var e = Iv.Exp(-x);
                var den = Iv.Point(1) + e;
                var sigma = new Iv(double.IsFinite(den.Hi) ? Math.Max(0, Down(1 / den.Hi)) : 0, Math.Min(1, Upn(1 / den.Lo)));
                var r = x * sigma;
                return new Iv(Math.Max(r.Lo, SiluMin), r.Hi);
            }
            default: throw new ArgumentOutOfRangeException(nameof(kind));
        }
    }

    /// <summary>The argument of tanh in the tanh-gelus, as Activation.Apply writes it: √(2/π)·(x + 0.044715·x³)
    /// (gelu_new, gelu_pytorch_tanh) or x·0.7978845608·(1 + 0.044715·x²) (gelu_fast).</summary>
    static Iv TanhInner(ActKind kind, Iv x) => kind == ActKind.GeluFast
        ? (Activation.GeluFastC * x) * (Iv.Point(1) + 0.044715 * (x * x))
        : Activation.TanhGeluC * (x + 0.044715 * (x * x * x));

    /// <summary>Rule P: cos θ and sin θ for the float64 angle θ = RotaryAngle(C, t, i), each widened by
    /// δ = 2⁻⁴⁰·(1 + |θ|) (the float64 error of θ itself and of Math.Cos/Sin), within [−1, 1].</summary>
    public static (Iv Cos, Iv Sin) Rotation(double theta)
    {
        double delta = Math.BitIncrement(Math.ScaleB(Up.Add(1, Math.Abs(theta)), -40));
        double cos = Math.Cos(theta), sin = Math.Sin(theta);
        return (new Iv(Math.Max(-1, Down(cos - delta)), Math.Min(1, Upn(cos + delta))),
                new Iv(Math.Max(-1, Down(sin - delta)), Math.Min(1, Upn(sin + delta))));
    }

    /// <summary>Rule S: the divisor of the scores of layer <paramref name="l"/>: (√d_head, enclosed, or the given base)
    /// times the layer factor, as ReferenceForward forms it.</summary>
    public static Iv Divisor(ModelConfig c, int l)
    {
        var (sqrtDHead, b, layerFactor) = c.AttnDivisor(l);
        return (sqrtDHead ? Iv.Sqrt(Iv.Point(c.DHead)) : Iv.Point(b)) * Iv.Point(layerFactor);
    }
}
