using Verifier.Core;

namespace Verifier.Checker;

/// <summary>The enclosures of proofs/R3-architectures.md in the checker's interval type <see cref="R"/>: normalisation
/// (LN, LNPre, RMS, RMSPre), every activation, rotary positions, and their constants. Each function returns a box that
/// contains the exact real value for every point of its input box (and ReferenceForward's float64 value, which is
/// within the same margins). Written from the rules, independently of the bound program.</summary>
public static class ArchIntervals
{
    static double Dn(double x, int k = 1) { while (k-- > 0) x = Math.BitDecrement(x); return x; }
    static double Up(double x, int k = 1) { while (k-- > 0) x = Math.BitIncrement(x); return x; }

    /// <summary>A float64 constant widened by <paramref name="ulps"/> each way: it then contains both the real constant
    /// it approximates (√(2/π), 0.7978845608, 0.044715, written in decimal) and the float64 ReferenceForward uses.</summary>
    public static R Const(double c, int ulps) => new(Dn(c, ulps), Up(c, ulps));

    static R Meet(R a, double lo, double hi) => new(Math.Max(a.Lo, lo), Math.Min(a.Hi, hi));

    /// <summary>R3 N: the normalisation of one position's residual box <paramref name="x"/>. LN/LNPre centre it as a
    /// linear map (x_i counted once: c_i = x_i − (1/d)·Σ_j x_j with the x_i terms collected), RMS/RMSPre do not; the
    /// scale S = √(v + eps) with v = (1/d)·Σ c_i² enclosed from the per-coordinate squares; N_i = c_i / S ∩ [−√d, √d];
    /// then ·w (LN, RMS) and + b (LN).</summary>
    public static R[] Normalize(NormKind kind, R[] x, double[]? w, double[]? b, double eps) => Normalize(kind, x, w, b, eps, meanValue: true);

    /// <summary>Rule N alone when <paramref name="meanValue"/> is false; N ∩ N′ (the mean-value form) when true.</summary>
    public static R[] Normalize(NormKind kind, R[] x, double[]? w, double[]? b, double eps, bool meanValue)
    {
        if (kind == NormKind.None) return x;
        int d = x.Length;
        bool centre = kind is NormKind.LN or NormKind.LNPre;
        var c = centre ? Centre(x) : x;   // read only below
        double vLo = 0, vHi = 0;
        for (int i = 0; i < d; i++)
        {
            double m = c[i].Lo > 0 ? c[i].Lo : c[i].Hi < 0 ? -c[i].Hi : 0;   // min |c| over C_i
            double M = Math.Max(Math.Abs(c[i].Lo), Math.Abs(c[i].Hi));
            vLo = Dn(vLo + Dn(m * m)); vHi = Up(vHi + Up(M * M));
        }
        vLo = Math.Max(0, Dn(vLo / d)); vHi = Up(vHi / d);
        var v = new R(Math.Max(0, Dn(vLo + eps)), Up(vHi + eps));   // v + eps
        var s = R.Sqrt(v);
        double root = Up(Math.Sqrt(d), 2);
        // N′ for the centred kinds only: for RMS/RMSPre rule N is already the first-order form (measured: equal widths).
        var mv = meanValue && centre ? MeanValue(centre, x, c, v, s, eps) : null;
        var y = new R[d];
        for (int i = 0; i < d; i++)
        {
            var n = Meet(c[i] / s, -root, root);
            if (mv is not null)
            {
                if (!(Math.Max(n.Lo, mv[i].Lo) <= Math.Min(n.Hi, mv[i].Hi)))
                    throw new CheckFailure("arithmetic", "the two enclosures of a normalisation are disjoint (an internal error: refused rather than guessed)");
                n = Meet(n, mv[i].Lo, mv[i].Hi);
            }
            if (w is not null) n = n * R.Of(w[i]);
            if (b is not null) n = n + R.Of(b[i]);
            y[i] = n;
        }
        return y;
    }

    /// <summary>R3 N′, the mean-value form intersected with N (proofs/R3-architectures.md): for x in the box X and its
    /// point m, N_i(x) = N_i(m) + Σ_k ∂N_i/∂x_k(ξ)·(x_k − m_k) for some ξ in X, with
    /// ∂N_i/∂x_k = (P_ik − c_i·c_k/(d·(v + eps)))/√(v + eps), P = I − 11ᵀ/d (LN, LNPre) or I (RMS, RMSPre), and c, v + eps,
    /// √(v + eps) at ξ enclosed by <paramref name="c"/>, <paramref name="v"/>, <paramref name="s"/> (rule N). The sum is
    /// formed in O(d): Σ_k P_ik Δ_k = (1 − 1/d)Δ_i − (1/d)Σ_{k≠i}Δ_k and Σ_k c_i c_k Δ_k = c_i·Σ_k c_k Δ_k. Null for a point
    /// box (nothing to gain) or a non-finite one.</summary>
    static R[]? MeanValue(bool centre, R[] x, R[] c, R v, R s, double eps)
    {
        int d = x.Length;
        if (x.All(r => r.Lo == r.Hi) || !x.All(r => double.IsFinite(r.Lo) && double.IsFinite(r.Hi))) return null;
        var m = x.Select(r => Math.Clamp(r.Lo + 0.5 * (r.Hi - r.Lo), r.Lo, r.Hi)).ToArray();   // a float64 inside each X_k
        var nm = Normalize(centre ? NormKind.LNPre : NormKind.RMSPre, m.Select(R.Of).ToArray(), null, null, eps, meanValue: false);
        var delta = new R[d];
        for (int k = 0; k < d; k++) delta[k] = x[k] - R.Of(m[k]);
        var cd = R.Zero;                                        // Σ_k c_k Δ_k
        for (int k = 0; k < d; k++) cd = cd + c[k] * delta[k];
        var q = R.One / (R.Of(d) * v);                          // 1/(d·(v + eps))
        var pd = centre ? Centre(delta) : delta;                // Σ_k P_ik Δ_k
        var r = new R[d];
        for (int i = 0; i < d; i++) r[i] = nm[i] + (pd[i] - c[i] * q * cd) / s;
        return r;
    }

    /// <summary>P·x with P = I − 11ᵀ/d over a box, x_i counted once: (1 − 1/d)·x_i − (1/d)·Σ_{j≠i} x_j. Σ_{j≠i} lo_j ≥
    /// Dn(Dn(Σ_j lo_j) − lo_i) (the rounded-down sum is a lower bound of the real sum, and the real Σ_{j≠i} lo_j is that
    /// real sum minus lo_i exactly); likewise upward for the his. Used by N (on X) and N′ (on Δ).</summary>
    static R[] Centre(R[] x)
    {
        int d = x.Length;
        double sumLo = 0, sumHi = 0;
        for (int j = 0; j < d; j++) { sumLo = Dn(sumLo + x[j].Lo); sumHi = Up(sumHi + x[j].Hi); }
        double k = 1.0 / d;               // rounded; enclosed below
        var inv = new R(Dn(k), Up(k));
        var keep = R.One - inv;            // 1 − 1/d
        var c = new R[d];
        for (int i = 0; i < d; i++)
        {
            var rest = new R(Dn(sumLo - x[i].Lo), Up(sumHi - x[i].Hi));   // Σ_{j≠i} x_j
            c[i] = keep * x[i] - inv * rest;
        }
        return c;
    }

    // A decimal literal is parsed correctly rounded (within ½ ulp): ±1 ulp holds the real constant and the float64.
    // Math.Sqrt(2/Math.PI): π, 2/π and the root each round by ½ ulp, ≤ 1.5 ulp in all: ±2 ulps.
    static readonly R GeluTanhC = Const(Activation.TanhGeluC, 2), GeluFastC = Const(Activation.GeluFastC, 1), Cubic = Const(0.044715, 1);
    /// <summary>Below the minimum of every gelu variant (≈ −0.1700) and of silu (≈ −0.2785): proofs/R3-architectures.md.</summary>
    public const double GeluFloor = -0.18, SiluFloor = -0.28;

    /// <summary>T3's slopes: |act'| ≤ 1 (relu), 1.13 (every gelu), 1.11 (silu) on all of ℝ (proofs/T3-normalised-tables.md).</summary>
    public static double Slope(ActKind kind) => kind switch { ActKind.Relu => 1, ActKind.Silu => 1.11, _ => 1.13 };

    /// <summary>R3 A: the activation over the box [a.Lo, a.Hi].</summary>
    public static R Act(ActKind kind, R a)
    {
        switch (kind)
        {
            case ActKind.Relu: return R.Relu(a);
            case ActKind.Gelu:
            {
                const double e = 2.8421709430404007E-14;   // 2⁻⁴⁵
                var phi = new R(Math.Max(0, Dn(Activation.Phi(a.Lo) - e)), Math.Min(1, Up(Activation.Phi(a.Hi) + e)));
                return Floor(a * phi, GeluFloor);
            }
            case ActKind.GeluNew or ActKind.GeluPytorchTanh or ActKind.GeluFast:
            {
                R U(double x)
                {
                    var p = R.Of(x);
                    return kind == ActKind.GeluFast ? p * GeluFastC * (R.One + Cubic * p * p) : GeluTanhC * (p + Cubic * p * p * p);
                }
                var t = new R(Math.Max(-1, Dn(Math.Tanh(U(a.Lo).Lo), 4)), Math.Min(1, Up(Math.Tanh(U(a.Hi).Hi), 4)));
                return Floor(0.5 * (a * (R.One + t)), GeluFloor);
            }
            case ActKind.Silu:
            {
                var sig = R.One / (R.One + R.Exp(-a));
                return Floor(a * Meet(sig, 0, 1), SiluFloor);
            }
            default: throw new ArgumentOutOfRangeException(nameof(kind));
        }
    }

    static R Floor(R a, double floor) => new(Math.Max(a.Lo, floor), Math.Max(a.Hi, floor));

    /// <summary>R3 P: cos θ and sin θ enclosed from the float64 θ of ReferenceForward.RotaryAngle with
    /// δ = 2⁻⁴⁰·(1 + |θ|), which covers the rounding of θ and of Math.Cos/Math.Sin.</summary>
    public static (R Cos, R Sin) CosSin(double theta)
    {
        double delta = Up(9.094947017729282E-13 * Up(1 + Math.Abs(theta)));   // 2⁻⁴⁰·(1 + |θ|)
        double c = Math.Cos(theta), s = Math.Sin(theta);
        return (new R(Math.Max(-1, Dn(c - delta)), Math.Min(1, Up(c + delta))), new R(Math.Max(-1, Dn(s - delta)), Math.Min(1, Up(s + delta))));
    }

    /// <summary>Rotates one head's query or key at position <paramref name="t"/> in place, with ReferenceForward's
    /// convention (x_a, x_b) ← (x_a cos θ − x_b sin θ, x_b cos θ + x_a sin θ).</summary>
    public static void Rotate(ModelConfig c, R[] x, int t) => Rotate(c, x, Angles(c, t));

    /// <summary>The enclosures of cos θ and sin θ of every rotated pair at position <paramref name="t"/>.</summary>
    public static (R Cos, R Sin)[] Angles(ModelConfig c, int t) =>
        Enumerable.Range(0, c.RotaryDim / 2).Select(i => CosSin(ReferenceForward.RotaryAngle(c, t, i))).ToArray();

    /// <summary><see cref="Rotate(ModelConfig, R[], int)"/> with the position's angles computed once (<see cref="Angles"/>).</summary>
    public static void Rotate(ModelConfig c, R[] x, (R Cos, R Sin)[] angles)
    {
        for (int i = 0; i < c.RotaryDim / 2; i++)
        {
            var (cos, sin) = angles[i];
            var (ia, ib) = ReferenceForward.RotaryPair(c, i);
            R xa = x[ia], xb = x[ib];
            x[ia] = xa * cos - xb * sin;
            x[ib] = xb * cos + xa * sin;
        }
    }

    /// <summary>R3 S: the divisor D_l of layer l's scores: √d_head (an interval) or the given base, times the layer factor.</summary>
    public static R Divisor(ModelConfig c, int layer)
    {
        var (sqrtDHead, baseScale, layerFactor) = c.AttnDivisor(layer);
        var b = sqrtDHead ? R.Sqrt(R.Of(c.DHead)) : R.Of(baseScale);
        return layerFactor == 1 ? b : b * R.Of(layerFactor);   // ×1 is exact
    }
}

/// <summary>The forward pass of every architecture ModelConfig accepts, in the checker's interval arithmetic
/// (proofs/R3-architectures.md over BF, IP and CL): one sequence's exact forward (BF, BFB for a non-basic model) and
/// box propagation over per-position boxes (IP, CL). Same order of operations as ReferenceForward.</summary>
public sealed class ArchForward
{
    public ModelConfig C { get; }
    readonly ModelWeights _w;
    readonly Forward _f;
    readonly (R Cos, R Sin)[][] _angles;   // per position: the rotary enclosures, computed once per model
    public ArchForward(ModelWeights w)
    {
        _w = w; C = w.Config; _f = new Forward(w);
        _angles = C.Rotary ? Enumerable.Range(0, C.NCtx).Select(t => ArchIntervals.Angles(C, t)).ToArray() : [];
    }
    double[] P(string name) => _w[name].Data;

    /// <summary>h⁰_t = W_E[x] (+ W_pos[t] when the model has learned positions): <see cref="Forward.Embed"/>.</summary>
    public R[] Embed(int x, int t) => _f.Embed(x, t);

    public R[] Norm(string prefix, NormKind kind, R[] x) =>
        ArchIntervals.Normalize(kind, x, kind is NormKind.LN or NormKind.RMS ? P(prefix + "w") : null, kind == NormKind.LN ? P(prefix + "b") : null, C.Eps);

    /// <summary>Layer l's attention output per position (b_O included) from the normalised inputs <paramref name="x"/>.
    /// exact: z_t = Σ_s p_ts v_s with interval softmax. Otherwise (box propagation) z_t is the hull of the attended
    /// value boxes (R3 W), intersected with the softmax combination when <paramref name="scores"/>.</summary>
    public R[][] Attention(int l, R[][] x, bool exact, bool scores)
    {
        int T = x.Length, H = C.NHeads, d = C.DModel, dh = C.DHead, KV = C.KvHeads;
        string a = $"blocks.{l}.attn.", kvp = C.NKeyValueHeads is null ? "" : "_";
        var WQ = P(a + "W_Q"); var WK = P(a + kvp + "W_K"); var WV = P(a + kvp + "W_V"); var WO = P(a + "W_O");
        var bQ = P(a + "b_Q"); var bK = P(a + kvp + "b_K"); var bV = P(a + kvp + "b_V"); var bO = P(a + "b_O");
        bool needScores = exact || scores;
        var divisor = ArchIntervals.Divisor(C, l);
        var K = new R[KV][][]; var V = new R[KV][][];
        for (int g = 0; g < KV; g++)
        {
            V[g] = x.Select(h => Forward.Lin(h, WV, g * d * dh, d, dh, bV, g * dh)).ToArray();
            if (needScores)
            {
                K[g] = x.Select(h => Forward.Lin(h, WK, g * d * dh, d, dh, bK, g * dh)).ToArray();
                if (C.Rotary) for (int t = 0; t < T; t++) ArchIntervals.Rotate(C, K[g][t], _angles[t]);
            }
        }
        var o = new R[T][];
        for (int t = 0; t < T; t++) o[t] = Enumerable.Range(0, d).Select(i => R.Of(bO[i])).ToArray();
        for (int hh = 0; hh < H; hh++)
        {
            int g = C.KvHeadOf(hh);
            R[][]? q = null;
            if (needScores)
            {
                q = x.Select(h => Forward.Lin(h, WQ, hh * d * dh, d, dh, bQ, hh * dh)).ToArray();
                if (C.Rotary) for (int t = 0; t < T; t++) ArchIntervals.Rotate(C, q[t], _angles[t]);
            }
            for (int t = 0; t < T; t++)
            {
                int first = C.FirstKey(l, t);
                var z = new R[dh];
                R[]? p = null;
                if (q is not null)
                {
                    var sg = new R[t + 1 - first];
                    for (int s = first; s <= t; s++) sg[s - first] = Forward.Dot(q[t], K[g][s]) / divisor;
                    p = Forward.Softmax(sg);
                }
                for (int e = 0; e < dh; e++)
                {
                    R comb = default;
                    if (p is not null)
                    {
                        comb = R.Zero;
                        for (int s = first; s <= t; s++) comb = comb + p[s - first] * V[g][s][e];
                    }
                    if (exact) { z[e] = comb; continue; }
                    var hull = V[g][first][e];
                    for (int s = first + 1; s <= t; s++) hull = R.Hull(hull, V[g][s][e]);
                    z[e] = p is null ? hull : new R(Math.Max(hull.Lo, comb.Lo), Math.Min(hull.Hi, comb.Hi));
                }
                o[t] = Forward.Plus(o[t], Forward.Lin(z, WO, hh * dh * d, dh, d));
            }
        }
        return o;
    }

    /// <summary>The MLP on a normalised input (R3 A, G): act(x W_in + b_in) W_out + b_out, or gated
    /// (act(x W_gate) ⊙ (x W_in) + b_in) W_out + b_out.</summary>
    public R[] Mlp(int l, R[] x)
    {
        int d = C.DModel, m = C.DMlp;
        string p = $"blocks.{l}.mlp.";
        var bIn = P(p + "b_in");
        R[] post;
        if (!C.GatedMlp)
            post = Forward.Lin(x, P(p + "W_in"), 0, d, m, bIn).Select(v => ArchIntervals.Act(C.Act, v)).ToArray();
        else
        {
            var gate = Forward.Lin(x, P(p + "W_gate"), 0, d, m);
            var lin = Forward.Lin(x, P(p + "W_in"), 0, d, m);
            post = new R[m];
            for (int j = 0; j < m; j++) post[j] = ArchIntervals.Act(C.Act, gate[j]) * lin[j] + R.Of(bIn[j]);
        }
        return Forward.Lin(post, P(p + "W_out"), 0, m, d, P(p + "b_out"));
    }

    /// <summary>Every layer on the residuals <paramref name="h"/> (one per position): the sequence's forward when
    /// <paramref name="exact"/>, box propagation otherwise.</summary>
    public R[][] Layers(R[][] h, bool exact, bool scores)
    {
        for (int l = 0; l < C.NLayers; l++)
        {
            var x1 = h.Select(v => Norm($"blocks.{l}.ln1.", C.Normalization, v)).ToArray();
            var attn = Attention(l, x1, exact, scores);
            if (C.AttnOnly) h = h.Select((v, t) => Forward.Plus(v, attn[t])).ToArray();
            else if (C.ParallelAttnMlp)
            {
                var mlp = h.Select(v => Mlp(l, Norm($"blocks.{l}.ln2.", C.Normalization, v))).ToArray();   // both read resid_pre
                h = h.Select((v, t) => Forward.Plus(Forward.Plus(v, attn[t]), mlp[t])).ToArray();
            }
            else
            {
                h = h.Select((v, t) => Forward.Plus(v, attn[t])).ToArray();
                h = h.Select(v => Forward.Plus(v, Mlp(l, Norm($"blocks.{l}.ln2.", C.Normalization, v)))).ToArray();
            }
        }
        return h;
    }

    /// <summary>The final normalisation (final_rms: RMS/RMSPre) before the unembedding.</summary>
    public R[] Final(R[] h) => Norm("ln_final.", C.FinalNorm, h);

    public R[] Logits(R[] h) => Forward.Lin(Final(h), P("unembed.W_U"), 0, C.DModel, C.DVocabOut, P("unembed.b_U"));

    /// <summary>z_i − z_y over a box of final residuals (before ln_final).</summary>
    public R[] LogitDiffsBox(R[] h, int y) => _f.LogitDiffsBox(Final(h), y);

    /// <summary>One sequence in sound arithmetic (BF, BFB): the upper end of its loss sum (rounded up, summed in
    /// position order) and the labelled positions it does not certify correctly classified.</summary>
    public (double Loss, int Errors) Sequence(Sequence seq)
    {
        var (sum, wrong) = SequenceInterval(seq);
        return (sum.Hi, wrong);
    }

    public (R Sum, int Errors) SequenceInterval(Sequence seq)
    {
        var h = Layers(seq.Tokens.Select((x, t) => Embed(x, t)).ToArray(), exact: true, scores: true);
        var sum = R.Zero;
        int wrong = 0;
        for (int t = 0; t < h.Length; t++)
        {
            if (seq.Labels[t] < 0) continue;
            var d = Forward.Diffs(Logits(h[t]), seq.Labels[t]);
            sum = sum + Forward.CeFromDiffs(d);
            if (!Forward.Certain(d)) wrong++;
        }
        return (sum, wrong);
    }

    /// <summary>Box propagation (IP without scores, CL with them) from per-position input boxes.</summary>
    public R[][] Boxes(R[][] h, bool scores) => Layers(h, exact: false, scores);
}
