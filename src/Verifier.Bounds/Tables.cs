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
        /// <summary>T3: ln1 read through the decoder, and the bias parts b·W + β per head (Q_b, K_b, V_b, OV_b = V_b W_O);
        /// null without a normalisation (then Q0… hold the biases, as in T1).</summary>
        public NormTables? Norm;
        public Iv[][]? Qb, Kb, Vb, OVb;
    }

    public sealed class MlpTables
    {
        public required Iv[][] U;             // [feature][d_mlp]
        public required Iv[] C;               // [d_mlp]: the linearisation point (T1: b_dec^{mid} W_in + b_in; T3: U₀ + U_b)
        public required bool[] G;             // linearisation point's gate: mid(C) > 0
        public required Iv[][] E;             // [feature][d_model]: T2's transition error e_i; T3: DM_i = W_dec^{mid}[i] − W_dec^{post}[i]
        public required Iv[] E0;              // [d_model]: e₀
        public required double[] WoutRowNorm; // ‖W_out[m, :]‖ (upper)
        public required double[] WinColNorm;  // ‖W_in[:, m]‖ (upper)
        /// <summary>T3: ln2 read through the decoder, U₀ = ((P b_dec^{mid}) ⊙ w) W_in, U_b = b W_in + b_in, M_i = (g ⊙ U_i) W_out,
        /// M₀ = (g ⊙ U₀) W_out; null without a normalisation.</summary>
        public NormTables? Norm;
        public Iv[]? U0, Ub, M0;
        public Iv[][]? M;
    }

    public required AttentionTables[] Attn;   // per layer
    public required MlpTables?[] Mlp;         // per layer (null for attention-only)
    public required Iv[][] Unembed;           // [feature][d_vocab_out]
    public required Iv[] Unembed0;
    /// <summary>T3: ln_final read through the decoder and UU_b = b W_U + b_U; null without a normalisation.</summary>
    public NormTables? UnembedNorm;
    public Iv[]? UnembedB;
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

    static Iv[] Points(double[] x, int off, int n) => Enumerable.Range(0, n).Select(j => Iv.Point(x[off + j])).ToArray();

    /// <summary>b·W + β (b the normalisation's bias, absent for all but LN), columns [off, off + cols) of W.</summary>
    static Iv[] BiasPart(NormTables nt, double[] wt, int off, int rows, int cols, double[] beta, int boff) =>
        nt.B is null ? Points(beta, boff, cols) : IntervalModel.Affine(Points(nt.B, 0, rows), wt, off, rows, cols, beta, boff);

    /// <summary>Builds every table; <paramref name="ccSite"/> maps model site index → crosscoder site index (all present).
    /// A model with normalisations (T3) gets the decoder rows centred and scaled before each product.</summary>
    public static Tables Build(ModelWeights w, CrosscoderWeights cc, int[] ccSite)
    {
        var c = w.Config; int n = cc.Config.Width, d = c.DModel, dh = c.DHead, H = c.NHeads, m = c.DMlp, V = c.DVocabOut;
        long flops = T3Flops.Tables(c, n);
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
            var ln1 = NormTables.Build(w, $"blocks.{l}.ln1.", c.Normalization, rows, b0);
            var inRows = ln1?.In ?? rows; var in0 = ln1?.In0 ?? b0;
            Iv[][][] Per(double[] wt) => Enumerable.Range(0, H).Select(h => inRows.Select(r => IntervalModel.Affine(r, wt, h * d * dh, d, dh, null, 0)).ToArray()).ToArray();
            // T1: the bias β goes into the …₀ part; T3: it is the bias part's (ι scales only the decoder's share).
            Iv[][] Per0(double[] wt, double[] bt) => Enumerable.Range(0, H).Select(h => IntervalModel.Affine(in0, wt, h * d * dh, d, dh, ln1 is null ? bt : null, h * dh)).ToArray();
            Iv[][]? PerB(double[] wt, double[] bt) => ln1 is null ? null : Enumerable.Range(0, H).Select(h => BiasPart(ln1, wt, h * d * dh, d, dh, bt, h * dh)).ToArray();
            var vt = Per(wv); var v0 = Per0(wv, bv); var vb = PerB(wv, bv);
            var midRows = Enumerable.Range(0, n).Select(i => Row(cc, i, mid)).ToArray();
            var bmid = Bias(cc, mid);
            var d0 = IntervalModel.Sub(b0, bmid);
            for (int j = 0; j < d; j++) d0[j] += Iv.Point(bo[j]);
            attn[l] = new AttentionTables
            {
                Q = Per(wq), K = Per(wk), V = vt, Q0 = Per0(wq, bq), K0 = Per0(wk, bk), V0 = v0,
                OV = Enumerable.Range(0, H).Select(h => vt[h].Select(r => IntervalModel.Affine(r, wo, h * dh * d, dh, d, null, 0)).ToArray()).ToArray(),
                OV0 = Enumerable.Range(0, H).Select(h => IntervalModel.Affine(v0[h], wo, h * dh * d, dh, d, null, 0)).ToArray(),
                D = Enumerable.Range(0, n).Select(i => IntervalModel.Sub(rows[i], midRows[i])).ToArray(),
                D0 = d0,
                Norm = ln1, Qb = PerB(wq, bq), Kb = PerB(wk, bk), Vb = vb,
                OVb = vb?.Select((x, h) => IntervalModel.Affine(x, wo, h * dh * d, dh, d, null, 0)).ToArray(),
            };
            flops += (long)(n + 1) * H * (3 * 2L * d * dh + 2L * dh * d) + (long)n * d + 2L * d;
            site++;
            if (c.AttnOnly) continue;

            string mm = $"blocks.{l}.mlp.";
            double[] win = w[mm + "W_in"].Data, bin = w[mm + "b_in"].Data, wout = w[mm + "W_out"].Data, bout = w[mm + "b_out"].Data;
            int post = ccSite[site + 1];
            var ln2 = NormTables.Build(w, $"blocks.{l}.ln2.", c.Normalization, midRows, bmid);
            var u = (ln2?.In ?? midRows).Select(r => IntervalModel.Affine(r, win, 0, d, m, null, 0)).ToArray();
            Iv[]? u0 = null, ub = null;
            Iv[] cvec;
            if (ln2 is null) cvec = IntervalModel.Affine(bmid, win, 0, d, m, bin, 0);
            else
            {
                u0 = IntervalModel.Affine(ln2.In0, win, 0, d, m, null, 0);
                ub = BiasPart(ln2, win, 0, d, m, bin, 0);
                cvec = IntervalModel.Add(u0, ub);
            }
            var g = cvec.Select(x => x.Lo + x.Hi > 0).ToArray();
            Iv[] Gate(Iv[] x) => x.Select((v, k) => g[k] ? v : Iv.Zero).ToArray();
            var postRows = Enumerable.Range(0, n).Select(i => Row(cc, i, post)).ToArray();
            var mi = u.Select(x => IntervalModel.Affine(Gate(x), wout, 0, m, d, null, 0)).ToArray();
            // T2: e_i = W_dec^{mid}[i] + M_i − W_dec^{post}[i]; T3: M_i is scaled by ι per token, so DM_i and M_i stay apart.
            var e = Enumerable.Range(0, n).Select(i => ln2 is null
                ? IntervalModel.Sub(IntervalModel.Add(midRows[i], mi[i]), postRows[i])
                : IntervalModel.Sub(midRows[i], postRows[i])).ToArray();
            var actC = cvec.Select(x => ArchIv.Act(c.Act, x)).ToArray();
            var e0 = IntervalModel.Sub(IntervalModel.Add(bmid, IntervalModel.Affine(actC, wout, 0, m, d, bout, 0)), Bias(cc, post));
            mlp[l] = new MlpTables
            {
                U = u, C = cvec, G = g, E = e, E0 = e0,
                WoutRowNorm = Enumerable.Range(0, m).Select(k => Up.Norm(Enumerable.Range(0, d).Select(j => wout[k * d + j]))).ToArray(),
                WinColNorm = Enumerable.Range(0, m).Select(k => Up.Norm(Enumerable.Range(0, d).Select(j => win[j * m + k]))).ToArray(),
                Norm = ln2, U0 = u0, Ub = ub, M = ln2 is null ? null : mi,
                M0 = ln2 is null ? null : IntervalModel.Affine(Gate(u0!), wout, 0, m, d, null, 0),
            };
            flops += (long)(n + 1) * 2L * d * m + m + (long)n * (2L * m * d + 2L * d) + 2L * m * d + 3L * d + 2L * m * Verifier.Bounds.Flops.Norm(d);
            site++;
        }
        var last = ccSite[site];
        double[] wu = w["unembed.W_U"].Data, bu = w["unembed.b_U"].Data;
        var lastRows = Enumerable.Range(0, n).Select(i => Row(cc, i, last)).ToArray();
        var lastBias = Bias(cc, last);
        var lnf = NormTables.Build(w, "ln_final.", c.FinalNorm, lastRows, lastBias);
        var unembed = (lnf?.In ?? lastRows).Select(r => IntervalModel.Affine(r, wu, 0, d, V, null, 0)).ToArray();
        var unembed0 = IntervalModel.Affine(lnf?.In0 ?? lastBias, wu, 0, d, V, lnf is null ? bu : null, 0);
        flops += (long)(n + 1) * 2L * d * V + V;
        return new Tables
        {
            Attn = attn, Mlp = mlp, Unembed = unembed, Unembed0 = unembed0, Flops = flops,
            UnembedNorm = lnf, UnembedB = lnf is null ? null : BiasPart(lnf, wu, 0, d, V, bu, 0),
        };
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
