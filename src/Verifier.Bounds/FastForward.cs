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
    readonly PointMatrix[] _qkv, _o, _in, _out;
    readonly PointMatrix _u;
    readonly Iv _scale;

    public FastForward(ModelWeights w)
    {
        C = w.Config;
        int d = C.DModel, H = C.NHeads, dh = C.DHead;
        _we = w["embed.W_E"].Data; _wp = w["pos_embed.W_pos"].Data;
        _qkv = new PointMatrix[C.NLayers]; _o = new PointMatrix[C.NLayers];
        _in = new PointMatrix[C.NLayers]; _out = new PointMatrix[C.NLayers];
        for (int l = 0; l < C.NLayers; l++)
        {
            string a = $"blocks.{l}.attn.";
            double[][] W = [w[a + "W_Q"].Data, w[a + "W_K"].Data, w[a + "W_V"].Data], B = [w[a + "b_Q"].Data, w[a + "b_K"].Data, w[a + "b_V"].Data];
            // Columns (which·H + head)·dh + e: q, k and v of every head from one product per row.
            _qkv[l] = new PointMatrix(d, 3 * H * dh, (i, j) => W[j / (H * dh)][(j % (H * dh) / dh) * d * dh + i * dh + j % dh],
                j => B[j / (H * dh)][j % (H * dh)]);
            var wo = w[a + "W_O"].Data; var bo = w[a + "b_O"].Data;
            _o[l] = new PointMatrix(H * dh, d, (i, j) => wo[i * d + j], j => bo[j]);   // [heads·d_head, d_model]: Σ_heads z W_O + b_O
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
    }

    /// <summary>Per-thread buffers, sized for n_ctx.</summary>
    public sealed class Scratch(ModelConfig c)
    {
        internal readonly double[] Hm = new double[c.NCtx * c.DModel], Hr = new double[c.NCtx * c.DModel];
        internal readonly double[] Qm = new double[c.NCtx * 3 * c.NHeads * c.DHead], Qr = new double[c.NCtx * 3 * c.NHeads * c.DHead];
        internal readonly double[] Zm = new double[c.NHeads * c.DHead], Zr = new double[c.NHeads * c.DHead];
        internal readonly double[] Am = new double[c.NCtx * c.DModel], Ar = new double[c.NCtx * c.DModel];
        internal readonly double[] Mm = new double[Math.Max(c.DMlp, 1)], Mr = new double[Math.Max(c.DMlp, 1)];
        internal readonly double[] Lm = new double[c.DVocabOut], Lr = new double[c.DVocabOut];
        internal readonly double[] Abs = new double[c.DHead];
        internal readonly Iv[] Sigma = new Iv[c.NCtx];
        internal readonly Iv[] Logits = new Iv[c.DVocabOut];
    }

    /// <summary>An upper bound on Σ_t CE(logits_t, y_t) over the labelled positions, and the number of labelled positions
    /// not certified correctly classified (certified: every other logit's enclosure lies strictly below the label's).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loops: optimised from the first call
    public (double LossSum, int Errors) Sequence(Sequence seq, Scratch s)
    {
        int T = seq.Tokens.Length, d = C.DModel, H = C.NHeads, dh = C.DHead, q3 = 3 * H * dh;
        for (int t = 0; t < T; t++)
            for (int i = 0; i < d; i++)
            {
                double m = _we[seq.Tokens[t] * d + i] + _wp[t * d + i];
                s.Hm[t * d + i] = m; s.Hr[t * d + i] = Math.BitIncrement(MidRad.U * Math.Abs(m));
            }
        for (int l = 0; l < C.NLayers; l++)
        {
            for (int t = 0; t < T; t++) _qkv[l].Apply(s.Hm.AsSpan(t * d, d), s.Hr.AsSpan(t * d, d), s.Qm.AsSpan(t * q3, q3), s.Qr.AsSpan(t * q3, q3));
            for (int t = 0; t < T; t++)
            {
                for (int h = 0; h < H; h++) Head(s, h, t);
                _o[l].Apply(s.Zm, s.Zr, s.Am.AsSpan(t * d, d), s.Ar.AsSpan(t * d, d));
            }
            MidRad.AddInPlace(s.Hm.AsSpan(0, T * d), s.Hr.AsSpan(0, T * d), s.Am.AsSpan(0, T * d), s.Ar.AsSpan(0, T * d));
            if (C.AttnOnly) continue;
            for (int t = 0; t < T; t++)
            {
                _in[l].Apply(s.Hm.AsSpan(t * d, d), s.Hr.AsSpan(t * d, d), s.Mm, s.Mr);
                MidRad.Relu(s.Mm, s.Mr);
                _out[l].Apply(s.Mm, s.Mr, s.Am.AsSpan(t * d, d), s.Ar.AsSpan(t * d, d));
            }
            MidRad.AddInPlace(s.Hm.AsSpan(0, T * d), s.Hr.AsSpan(0, T * d), s.Am.AsSpan(0, T * d), s.Ar.AsSpan(0, T * d));
        }
        double sum = 0; int errors = 0;
        for (int t = 0; t < T; t++)
        {
            int y = seq.Labels[t];
            if (y < 0) continue;
            _u.Apply(s.Hm.AsSpan(t * d, d), s.Hr.AsSpan(t * d, d), s.Lm, s.Lr);
            for (int i = 0; i < s.Logits.Length; i++) s.Logits[i] = MidRad.ToIv(s.Lm[i], s.Lr[i]);
            sum = Up.Add(sum, IntervalModel.CrossEntropy(s.Logits, y).Hi);
            bool correct = true;
            for (int i = 0; i < s.Logits.Length && correct; i++) correct = i == y || (s.Logits[i] - s.Logits[y]).Hi < 0;
            if (!correct) errors++;
        }
        return (sum, errors);
    }

    /// <summary>Head h at position t: scores σ_s = (q_t·k_s)/√d_head (R2 dot products, then R1), p = softmax(σ) (R1),
    /// z = Σ_{s≤t} p_s v_s (R2 with interval weights), into Zm/Zr at h·d_head.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loops: optimised from the first call
    void Head(Scratch s, int h, int t)
    {
        int H = C.NHeads, dh = C.DHead, q3 = 3 * H * dh;
        int qo = t * q3 + h * dh;
        var kq = MidRad.Constants.For(dh);
        for (int u = 0; u <= t; u++)
        {
            int ko = u * q3 + (H + h) * dh;
            double m = 0, S = 0;
            for (int e = 0; e < dh; e++)
            {
                double qm = s.Qm[qo + e], qr = s.Qr[qo + e], km = s.Qm[ko + e], kr = s.Qr[ko + e];
                m += qm * km;
                S += MidRad.Coefficient(kq.C, qm, qr) * Math.Abs(km) + Math.BitIncrement(Math.Abs(qm) + qr) * kr;
            }
            double rho = kq.Radius(m, S);
            s.Sigma[u] = MidRad.ToIv(m, rho) * _scale;
        }
        var p = IntervalModel.Softmax(s.Sigma[..(t + 1)]);
        var kz = MidRad.Constants.For(t + 1);
        var zm = s.Zm.AsSpan(h * dh, dh); var zr = s.Zr.AsSpan(h * dh, dh);
        zm.Clear(); zr.Clear();
        for (int u = 0; u <= t; u++)
        {
            var (pm, pr) = MidRad.FromIv(p[u]);
            int vo = u * q3 + (2 * H + h) * dh;
            var vm = s.Qm.AsSpan(vo, dh); var vr = s.Qr.AsSpan(vo, dh);
            for (int e = 0; e < dh; e++) s.Abs[e] = Math.Abs(vm[e]);
            MidRad.Axpy(pm, vm, zm);
            MidRad.Axpy(MidRad.Coefficient(kz.C, pm, pr), s.Abs, zr);
            MidRad.Axpy(Math.BitIncrement(Math.Abs(pm) + pr), vr, zr);
        }
        for (int e = 0; e < dh; e++) zr[e] = kz.Radius(zm[e], zr[e]);
    }
}
