using Verifier.Core;

namespace Verifier.Bounds;

/// <summary>Per-feature tables (BOUNDS.md §3, proofs/T1-feature-tables.md), as interval enclosures of the exact
/// products: for crosscoder site s and feature i, Q_i = W_dec^s[i] W_Q (per head), likewise K, V; OV_i = V_i W_O;
/// U_i = W_dec^{mid}[i] W_in; M_i = (g ⊙ U_i) W_out; the transition errors e_i; and UU_i = W_dec^{last}[i] W_U.
/// The bias parts (…₀) are the same products applied to b_dec.</summary>
public sealed class Tables
{
    public sealed class AttentionTables
    {
        public required Iv[][][] Q, K, V;     // [head][feature][d_head]
        public required Iv[][] Q0, K0, V0;    // [head][d_head]
        public required Iv[][][] OV;          // [head][feature][d_model]
        public required Iv[][] OV0;           // [head][d_model]
        public required Iv[][] D;             // [feature][d_model]: W_dec^s[i] − W_dec^{mid}[i]
        public required Iv[] D0;              // b_dec^s − b_dec^{mid} + b_O
    }

    public sealed class MlpTables
    {
        public required Iv[][] U;             // [feature][d_mlp]
        public required Iv[] C;               // [d_mlp]: b_dec^{mid} W_in + b_in
        public required bool[] G;             // linearisation point's gate: mid(C) > 0
        public required Iv[][] E;             // [feature][d_model]: transition error e_i
        public required Iv[] E0;              // [d_model]
        public required double[] WoutRowNorm; // ‖W_out[m, :]‖ (upper)
        public required double[] WinColNorm;  // ‖W_in[:, m]‖ (upper)
    }

    public required AttentionTables[] Attn;   // per layer
    public required MlpTables?[] Mlp;         // per layer (null for attention-only)
    public required Iv[][] Unembed;           // [feature][d_vocab_out]
    public required Iv[] Unembed0;
    public long Flops { get; init; }

    static Iv[] Row(CrosscoderWeights cc, int i, int s)
    {
        int S = cc.Config.Sites.Count, d = cc.Config.DModel;
        var dec = cc["W_dec"].Data;
        var r = new Iv[d];
        for (int j = 0; j < d; j++) r[j] = Iv.Point(dec[(i * S + s) * d + j]);
        return r;
    }

    static Iv[] Bias(CrosscoderWeights cc, int s)
    {
        int d = cc.Config.DModel; var b = cc["b_dec"].Data;
        return Enumerable.Range(0, d).Select(j => Iv.Point(b[s * d + j])).ToArray();
    }

    /// <summary>Builds every table; <paramref name="ccSite"/> maps model site index → crosscoder site index (all present).</summary>
    public static Tables Build(ModelWeights w, CrosscoderWeights cc, int[] ccSite)
    {
        var c = w.Config; int n = cc.Config.Width, d = c.DModel, dh = c.DHead, H = c.NHeads, m = c.DMlp, V = c.DVocabOut;
        long flops = 0;
        var attn = new AttentionTables[c.NLayers];
        var mlp = new MlpTables?[c.NLayers];
        int site = 0;
        for (int l = 0; l < c.NLayers; l++)
        {
            string a = $"blocks.{l}.attn.";
            double[] wq = w[a + "W_Q"].Data, wk = w[a + "W_K"].Data, wv = w[a + "W_V"].Data, wo = w[a + "W_O"].Data;
            double[] bq = w[a + "b_Q"].Data, bk = w[a + "b_K"].Data, bv = w[a + "b_V"].Data, bo = w[a + "b_O"].Data;
            int s = ccSite[site], mid = ccSite[site + 1];
            var rows = Enumerable.Range(0, n).Select(i => Row(cc, i, s)).ToArray();
            var b0 = Bias(cc, s);
            Iv[][][] Per(double[] wt) => Enumerable.Range(0, H).Select(h => rows.Select(r => IntervalModel.Affine(r, wt, h * d * dh, d, dh, null, 0)).ToArray()).ToArray();
            Iv[][] Per0(double[] wt, double[] bt) => Enumerable.Range(0, H).Select(h => IntervalModel.Affine(b0, wt, h * d * dh, d, dh, bt, h * dh)).ToArray();
            var vt = Per(wv); var v0 = Per0(wv, bv);
            var midRows = Enumerable.Range(0, n).Select(i => Row(cc, i, mid)).ToArray();
            var d0 = IntervalModel.Sub(b0, Bias(cc, mid));
            for (int j = 0; j < d; j++) d0[j] += Iv.Point(bo[j]);
            attn[l] = new AttentionTables
            {
                Q = Per(wq), K = Per(wk), V = vt, Q0 = Per0(wq, bq), K0 = Per0(wk, bk), V0 = v0,
                OV = Enumerable.Range(0, H).Select(h => vt[h].Select(r => IntervalModel.Affine(r, wo, h * dh * d, dh, d, null, 0)).ToArray()).ToArray(),
                OV0 = Enumerable.Range(0, H).Select(h => IntervalModel.Affine(v0[h], wo, h * dh * d, dh, d, null, 0)).ToArray(),
                D = Enumerable.Range(0, n).Select(i => IntervalModel.Sub(rows[i], midRows[i])).ToArray(),
                D0 = d0,
            };
            flops += (long)(n + 1) * H * (3 * 2L * d * dh + 2L * dh * d) + (long)n * d + 2L * d;
            site++;
            if (c.AttnOnly) continue;

            string mm = $"blocks.{l}.mlp.";
            double[] win = w[mm + "W_in"].Data, bin = w[mm + "b_in"].Data, wout = w[mm + "W_out"].Data, bout = w[mm + "b_out"].Data;
            int post = ccSite[site + 1];
            var bmid = Bias(cc, mid);
            var u = midRows.Select(r => IntervalModel.Affine(r, win, 0, d, m, null, 0)).ToArray();
            var cvec = IntervalModel.Affine(bmid, win, 0, d, m, bin, 0);
            var g = cvec.Select(x => x.Lo + x.Hi > 0).ToArray();
            Iv[] Gate(Iv[] x) => x.Select((v, k) => g[k] ? v : Iv.Zero).ToArray();
            var e = new Iv[n][];
            for (int i = 0; i < n; i++)
            {
                var mi = IntervalModel.Affine(Gate(u[i]), wout, 0, m, d, null, 0);
                e[i] = IntervalModel.Sub(IntervalModel.Add(midRows[i], mi), Row(cc, i, post));
            }
            var reluC = cvec.Select(Iv.Relu).ToArray();
            var e0 = IntervalModel.Sub(IntervalModel.Add(bmid, IntervalModel.Affine(reluC, wout, 0, m, d, bout, 0)), Bias(cc, post));
            mlp[l] = new MlpTables
            {
                U = u, C = cvec, G = g, E = e, E0 = e0,
                WoutRowNorm = Enumerable.Range(0, m).Select(k => Up.Norm(Enumerable.Range(0, d).Select(j => wout[k * d + j]))).ToArray(),
                WinColNorm = Enumerable.Range(0, m).Select(k => Up.Norm(Enumerable.Range(0, d).Select(j => win[j * m + k]))).ToArray(),
            };
            flops += (long)(n + 1) * 2L * d * m + m + (long)n * (2L * m * d + 2L * d) + 2L * m * d + 3L * d + 2L * m * Verifier.Bounds.Flops.Norm(d);
            site++;
        }
        var last = ccSite[site];
        double[] wu = w["unembed.W_U"].Data, bu = w["unembed.b_U"].Data;
        var unembed = Enumerable.Range(0, n).Select(i => IntervalModel.Affine(Row(cc, i, last), wu, 0, d, V, null, 0)).ToArray();
        var unembed0 = IntervalModel.Affine(Bias(cc, last), wu, 0, d, V, bu, 0);
        flops += (long)(n + 1) * 2L * d * V + V;
        return new Tables { Attn = attn, Mlp = mlp, Unembed = unembed, Unembed0 = unembed0, Flops = flops };
    }


    /// <summary>Σ_i f_i T_i + T₀ for one token's features.</summary>
    public static Iv[] Combine((int Index, double Value)[] f, Iv[][] table, Iv[] t0)
    {
        var r = (Iv[])t0.Clone();
        foreach (var (i, v) in f)
        {
            var row = table[i]; var fv = Iv.Point(v);
            for (int j = 0; j < r.Length; j++) r[j] += row[j] * fv;
        }
        return r;
    }
}
