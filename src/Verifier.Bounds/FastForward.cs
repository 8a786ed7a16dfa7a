using System.Runtime.CompilerServices;
using Verifier.Core;

namespace Verifier.Bounds;

/// <summary>The model of BOUNDS.md §1 in midpoint–radius arithmetic (proofs/R2-midpoint-radius.md): every weight
/// product is a <see cref="PointMatrix"/> (R2), residual adds and ReLU are elementwise with their rounding, and the
/// small per-position parts (attention scores through softmax, cross-entropy) are the scalar interval code of R1.
/// Used by brute force over blocks of sequences (proofs/BF-brute-force.md, lemma BFB); one instance is shared by all
/// threads, each with its own <see cref="Scratch"/>.</summary>
public sealed class FastForward
{
    readonly ModelConfig C;
    readonly double[] _we, _wp;
    readonly PointMatrix[] _q, _kv, _o, _in, _out;
    readonly PointMatrix _u;
    readonly Iv _scale;
    /// <summary>R2's constants for the score dot products (n = d_head) and the mixes p·v (n = 1..n_ctx).</summary>
    readonly MidRad.Constants _kq;
    readonly MidRad.Constants[] _kz;

    /// <summary>Test only: run the last layer at every position, not only at the labelled ones (the bound is the same,
    /// proofs/BF-brute-force.md, "Only labelled positions in the last layer").</summary>
    internal bool AllPositions { get; init; }

    public FastForward(ModelWeights w)
    {
        C = w.Config;
        int d = C.DModel, H = C.NHeads, dh = C.DHead, hd = H * dh;
        _we = w["embed.W_E"].Data; _wp = w["pos_embed.W_pos"].Data;
        _q = new PointMatrix[C.NLayers]; _kv = new PointMatrix[C.NLayers]; _o = new PointMatrix[C.NLayers];
        _in = new PointMatrix[C.NLayers]; _out = new PointMatrix[C.NLayers];
        for (int l = 0; l < C.NLayers; l++)
        {
            string a = $"blocks.{l}.attn.";
            double[] wq = w[a + "W_Q"].Data, bq = w[a + "b_Q"].Data;
            double[][] W = [w[a + "W_K"].Data, w[a + "W_V"].Data], B = [w[a + "b_K"].Data, w[a + "b_V"].Data];
            // Column head·dh + e: q of every head; columns (which·H + head)·dh + e: k (which 0) and v (which 1) of every
            // head. The last layer needs k and v at every position but q only at the labelled ones.
            _q[l] = new PointMatrix(d, hd, (i, j) => wq[(j / dh) * d * dh + i * dh + j % dh], j => bq[j]);
            _kv[l] = new PointMatrix(d, 2 * hd, (i, j) => W[j / hd][(j % hd / dh) * d * dh + i * dh + j % dh], j => B[j / hd][j % hd]);
            var wo = w[a + "W_O"].Data; var bo = w[a + "b_O"].Data;
            _o[l] = new PointMatrix(hd, d, (i, j) => wo[i * d + j], j => bo[j]);   // [heads·d_head, d_model]: Σ_heads z W_O + b_O
            if (!C.AttnOnly)
            {
                string m = $"blocks.{l}.mlp.";
                var wi = w[m + "W_in"].Data; var bi = w[m + "b_in"].Data; var wout = w[m + "W_out"].Data; var bout = w[m + "b_out"].Data;
                _in[l] = new PointMatrix(d, C.DMlp, (i, j) => wi[i * C.DMlp + j], j => bi[j]);
                _out[l] = new PointMatrix(C.DMlp, d, (i, j) => wout[i * d + j], j => bout[j]);
            }
        }
        var wu = w["unembed.W_U"].Data; var bu = w["unembed.b_U"].Data;
        _u = new PointMatrix(d, C.DVocabOut, (i, j) => wu[i * C.DVocabOut + j], j => bu[j]);
        _scale = Iv.Point(1) / Iv.Sqrt(Iv.Point(dh));
        _kq = MidRad.Constants.For(dh);
        _kz = Enumerable.Range(0, C.NCtx + 1).Select(MidRad.Constants.For).ToArray();
    }

    /// <summary>Per-thread buffers, sized for n_ctx.</summary>
    public sealed class Scratch(ModelConfig c)
    {
        internal readonly double[] Hm = new double[c.NCtx * c.DModel], Hr = new double[c.NCtx * c.DModel];
        internal readonly double[] Qm = new double[c.NCtx * c.NHeads * c.DHead], Qr = new double[c.NCtx * c.NHeads * c.DHead];
        internal readonly double[] KVm = new double[c.NCtx * 2 * c.NHeads * c.DHead], KVr = new double[c.NCtx * 2 * c.NHeads * c.DHead];
        internal readonly double[] Zm = new double[c.NHeads * c.DHead], Zr = new double[c.NHeads * c.DHead];
        internal readonly double[] Am = new double[c.DModel], Ar = new double[c.DModel];
        internal readonly double[] Mm = new double[Math.Max(c.DMlp, 1)], Mr = new double[Math.Max(c.DMlp, 1)];
        internal readonly double[] Lm = new double[c.DVocabOut], Lr = new double[c.DVocabOut];
        internal readonly double[] Abs = new double[c.DHead];
        internal readonly Iv[] Sigma = new Iv[c.NCtx], P = new Iv[c.NCtx];
        internal readonly int[] Rows = new int[c.NCtx];
    }

    /// <summary>An upper bound on Σ_t CE(logits_t, y_t) over the labelled positions, and the number of labelled positions
    /// not certified correctly classified (certified: every other logit's enclosure lies strictly below the label's).
    /// Layers before the last run at every position; the last one computes k and v at every position and everything
    /// else (q, attention, MLP, unembedding) only at the labelled positions, whose logits alone the loss reads
    /// (proofs/BF-brute-force.md, "Only labelled positions in the last layer").</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loops: optimised from the first call
    public (double LossSum, int Errors) Sequence(Sequence seq, Scratch s)
    {
        int T = seq.Tokens.Length, d = C.DModel, hd = C.NHeads * C.DHead, kv = 2 * hd;
        for (int t = 0; t < T; t++)
            for (int i = 0; i < d; i++)
            {
                double m = _we[seq.Tokens[t] * d + i] + _wp[t * d + i];
                s.Hm[t * d + i] = m; s.Hr[t * d + i] = Math.BitIncrement(MidRad.U * Math.Abs(m));
            }
        int labelled = 0;
        for (int t = 0; t < T; t++) if (AllPositions || seq.Labels[t] >= 0) s.Rows[labelled++] = t;
        for (int l = 0; l < C.NLayers; l++)
        {
            bool last = l == C.NLayers - 1;
            int rows = last ? labelled : T;
            for (int t = 0; t < T; t++) _kv[l].Apply(s.Hm.AsSpan(t * d, d), s.Hr.AsSpan(t * d, d), s.KVm.AsSpan(t * kv, kv), s.KVr.AsSpan(t * kv, kv));
            for (int i = 0; i < rows; i++)
            {
                int t = last ? s.Rows[i] : i;
                _q[l].Apply(s.Hm.AsSpan(t * d, d), s.Hr.AsSpan(t * d, d), s.Qm.AsSpan(t * hd, hd), s.Qr.AsSpan(t * hd, hd));
            }
            // Row t's update reads q_t and the k, v of every position (all computed above, before any update) and
            // otherwise only h_t, so each row's residual stream is updated in place.
            for (int i = 0; i < rows; i++)
            {
                int t = last ? s.Rows[i] : i;
                for (int h = 0; h < C.NHeads; h++) Head(s, h, t);
                _o[l].Apply(s.Zm, s.Zr, s.Am, s.Ar);
                var hm = s.Hm.AsSpan(t * d, d); var hr = s.Hr.AsSpan(t * d, d);
                MidRad.AddInPlace(hm, hr, s.Am, s.Ar);
                if (C.AttnOnly) continue;
                _in[l].Apply(hm, hr, s.Mm, s.Mr);
                MidRad.Relu(s.Mm, s.Mr);
                _out[l].Apply(s.Mm, s.Mr, s.Am, s.Ar);
                MidRad.AddInPlace(hm, hr, s.Am, s.Ar);
            }
        }
        double sum = 0; int errors = 0;
        for (int t = 0; t < T; t++)
        {
            int y = seq.Labels[t];
            if (y < 0) continue;
            _u.Apply(s.Hm.AsSpan(t * d, d), s.Hr.AsSpan(t * d, d), s.Lm, s.Lr);
            var (ce, certain) = CeUpper(s.Lm, s.Lr, y);
            sum = Up.Add(sum, ce);
            if (!certain) errors++;
        }
        return (sum, errors);
    }

    /// <summary>The upper end of the R1 enclosure of CE(z, y) for logits z_i ∈ [m_i − r_i, m_i + r_i], without interval
    /// arrays: d_i = z_i − z_y has upper end δ_i = succ(fl(succ(fl(m_i + r_i)) − pred(fl(m_y − r_y)))) (R1's subtraction of
    /// the outward-rounded ends), and CE ≤ M + log(e^{−M} + Σ_{i≠y} e^{δ_i − M}), M = max(0, max δ_i) (an exact identity
    /// for log(1 + Σ e^{d_i}), monotone in every d_i), evaluated with the upward helpers: succ after the subtraction and
    /// the sums, 4 ulps up after exp and log (IntervalModel.CrossEntropyFromDifferences' upper end, bit for bit). Also
    /// whether every δ_i &lt; 0, i.e. y is certified the arg-max (proofs/ACC-accuracy.md).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loops: optimised from the first call
    internal static (double Ce, bool Certain) CeUpper(ReadOnlySpan<double> lm, ReadOnlySpan<double> lr, int y)
    {
        double zy = Math.BitDecrement(lm[y] - lr[y]);
        if (!double.IsFinite(zy)) throw new IntervalOverflowException($"the interval of logit {y}");
        double M = 0;
        for (int i = 0; i < lm.Length; i++)
        {
            if (i == y) continue;
            double hi = Math.BitIncrement(lm[i] + lr[i]);
            if (!double.IsFinite(hi)) throw new IntervalOverflowException($"the interval of logit {i}");
            M = Math.Max(M, Math.BitIncrement(hi - zy));
        }
        if (!double.IsFinite(M)) throw new IntervalOverflowException("the interval of a logit difference");
        double sum = Up.Exp(-M), top = double.NegativeInfinity;
        for (int i = 0; i < lm.Length; i++)
        {
            if (i == y) continue;
            double di = Math.BitIncrement(Math.BitIncrement(lm[i] + lr[i]) - zy);
            top = Math.Max(top, di);
            sum = Up.Add(sum, Up.Exp(Math.BitIncrement(di - M)));
        }
        double log = Math.Log(sum);
        for (int k = 0; k < 4; k++) log = Math.BitIncrement(log);
        return (Math.BitIncrement(M + log), top < 0);
    }

    /// <summary>Head h at position t: scores σ_s = (q_t·k_s)/√d_head (R2 dot products, then R1), p = softmax(σ) (R1),
    /// z = Σ_{s≤t} p_s v_s (R2 with interval weights), into Zm/Zr at h·d_head.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loops: optimised from the first call
    void Head(Scratch s, int h, int t)
    {
        int H = C.NHeads, dh = C.DHead, hd = H * dh, kv = 2 * hd;
        int qo = t * hd + h * dh;
        var kq = _kq;
        for (int u = 0; u <= t; u++)
        {
            int ko = u * kv + h * dh;
            double m = 0, S = 0;
            for (int e = 0; e < dh; e++)
            {
                double qm = s.Qm[qo + e], qr = s.Qr[qo + e], km = s.KVm[ko + e], kr = s.KVr[ko + e];
                m += qm * km;
                S += MidRad.Coefficient(kq.C, qm, qr) * Math.Abs(km) + Math.BitIncrement(Math.Abs(qm) + qr) * kr;
            }
            double rho = kq.Radius(m, S);
            s.Sigma[u] = MidRad.ToIv(m, rho) * _scale;
        }
        Softmax(s.Sigma.AsSpan(0, t + 1), s.P);
        var kz = _kz[t + 1];
        var zm = s.Zm.AsSpan(h * dh, dh); var zr = s.Zr.AsSpan(h * dh, dh);
        zm.Clear(); zr.Clear();
        for (int u = 0; u <= t; u++)
        {
            var (pm, pr) = MidRad.FromIv(s.P[u]);
            int vo = u * kv + hd + h * dh;
            var vm = s.KVm.AsSpan(vo, dh); var vr = s.KVr.AsSpan(vo, dh);
            for (int e = 0; e < dh; e++) s.Abs[e] = Math.Abs(vm[e]);
            MidRad.Axpy(pm, vm, zm);
            MidRad.Axpy(MidRad.Coefficient(kz.C, pm, pr), s.Abs, zr);
            MidRad.Axpy(Math.BitIncrement(Math.Abs(pm) + pr), vr, zr);
        }
        for (int e = 0; e < dh; e++) zr[e] = kz.Radius(zm[e], zr[e]);
    }

    /// <summary><see cref="IntervalModel.Softmax"/> into a buffer: p_s = 1 / Σ_u exp(σ_u − σ_s), clipped to [0, 1].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loops: optimised from the first call
    static void Softmax(ReadOnlySpan<Iv> sigma, Span<Iv> p)
    {
        for (int s = 0; s < sigma.Length; s++)
        {
            var sum = Iv.Zero;
            for (int u = 0; u < sigma.Length; u++) sum += u == s ? Iv.Point(1) : Iv.Exp(sigma[u] - sigma[s]);
            var q = Iv.Point(1) / sum;
            p[s] = new Iv(Math.Max(0, q.Lo), Math.Min(1, q.Hi));
        }
    }
}
