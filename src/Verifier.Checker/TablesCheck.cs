using System.Text.Json;
using Verifier.Core;

namespace Verifier.Checker;

/// <summary>The checker's own feature tables (proofs/T1-feature-tables.md, T2-linearisation.md), built at the T1
/// table step with the gates the transcript records.</summary>
public sealed partial class TranscriptChecker
{
    // T3 (a model with normalisations): Norm and the bias parts …b (b·W + β); without one they are null and …0 holds β (T1).
    sealed class AttnTab { public required R[][][] Q, K, V, OV; public required R[][] Q0, K0, V0, OV0, D; public required R[] D0; public NormTab? Norm; public R[][]? Qb, Kb, Vb, OVb; }
    // T2: E holds e_i; T3: E holds DM_i = W_dec^mid[i] − W_dec^post[i], and M_i, M₀, U₀, U_b are kept apart (scaled by ι).
    sealed class MlpTab { public required R[][] U, E; public required R[] C, E0; public required bool[] G; public required double[] WoutRow; public NormTab? Norm; public R[][]? M; public R[]? U0, Ub, M0; }
    sealed class Tabs { public required AttnTab[] Attn; public required MlpTab?[] Mlp; public required R[][] Unembed; public required R[] Unembed0; public NormTab? UnembedNorm; public R[]? UnembedB; }
    Tabs? _tables;

    internal static R[] Combine((int Index, double Value)[] f, R[][] table, R[] t0)
    {
        var r = t0.Select(x => x).ToArray();
        foreach (var (i, v) in f) for (int j = 0; j < r.Length; j++) r[j] = r[j] + table[i][j] * R.Of(v);
        return r;
    }

    Info TableStep(Step s)
    {
        if (_strategy != "crosscoder-tables") Fail(s, "a T1 table step belongs to crosscoder-tables");
        if (s.Claim.EnumerateObject().Any()) Fail(s, "the table step claims nothing");
        Once(s, "T1 table");
        for (int k = 0; k < Sites.Count; k++)
            if (CcSite(k) < 0) Fail(s, $"crosscoder-tables needs a crosscoder site for {Sites[k]}");
        var gatesJson = s.DataField("gates");
        if (gatesJson.ValueKind != JsonValueKind.Array || gatesJson.GetArrayLength() != C.NLayers) Fail(s, "data.gates needs one list per layer");
        var cc = _cc!; int n = cc.Config.Width, S = cc.Config.Sites.Count, d = C.DModel, dh = C.DHead, H = C.NHeads, m = C.DMlp, V = C.DVocabOut;
        var dec = cc["W_dec"].Data; var bdec = cc["b_dec"].Data;
        R[] Row(int i, int site) { int cs = CcSite(site); return Enumerable.Range(0, d).Select(j => R.Of(dec[(i * S + cs) * d + j])).ToArray(); }
        R[] Bias(int site) { int cs = CcSite(site); return Enumerable.Range(0, d).Select(j => R.Of(bdec[cs * d + j])).ToArray(); }
        double[] P(string name) => _w[name].Data;
        var attn = new AttnTab[C.NLayers]; var mlp = new MlpTab?[C.NLayers];
        int site = 0;
        for (int l = 0; l < C.NLayers; l++)
        {
            string a = $"blocks.{l}.attn.";
            var rows = Enumerable.Range(0, n).Select(i => Row(i, site)).ToArray();
            var b0 = Bias(site);
            var ln1 = NormTab.Of(_w, $"blocks.{l}.ln1.", C.Normalization, rows, b0);
            var inRows = ln1?.In ?? rows; var in0 = ln1?.In0 ?? b0;
            R[][][] Per(string w) => Enumerable.Range(0, H).Select(h => inRows.Select(r => Forward.Lin(r, P(a + w), h * d * dh, d, dh)).ToArray()).ToArray();
            R[][] Per0(string w, string b) => Enumerable.Range(0, H).Select(h => Forward.Lin(in0, P(a + w), h * d * dh, d, dh, ln1 is null ? P(a + b) : null, h * dh)).ToArray();
            R[][]? PerB(string w, string b) => ln1 is null ? null : Enumerable.Range(0, H).Select(h => ln1.BiasPart(P(a + w), h * d * dh, d, dh, P(a + b), h * dh)).ToArray();
            var vt = Per("W_V"); var v0 = Per0("W_V", "b_V"); var vb = PerB("W_V", "b_V");
            var mid = Enumerable.Range(0, n).Select(i => Row(i, site + 1)).ToArray();
            var d0 = Forward.Minus(b0, Bias(site + 1));
            var bO = P(a + "b_O");
            for (int j = 0; j < d; j++) d0[j] = d0[j] + R.Of(bO[j]);
            attn[l] = new AttnTab
            {
                Q = Per("W_Q"), K = Per("W_K"), V = vt, Q0 = Per0("W_Q", "b_Q"), K0 = Per0("W_K", "b_K"), V0 = v0,
                OV = Enumerable.Range(0, H).Select(h => vt[h].Select(r => Forward.Lin(r, P(a + "W_O"), h * dh * d, dh, d)).ToArray()).ToArray(),
                OV0 = Enumerable.Range(0, H).Select(h => Forward.Lin(v0[h], P(a + "W_O"), h * dh * d, dh, d)).ToArray(),
                D = Enumerable.Range(0, n).Select(i => Forward.Minus(rows[i], mid[i])).ToArray(), D0 = d0,
                Norm = ln1, Qb = PerB("W_Q", "b_Q"), Kb = PerB("W_K", "b_K"), Vb = vb,
                OVb = vb?.Select((x, h) => Forward.Lin(x, P(a + "W_O"), h * dh * d, dh, d)).ToArray(),
            };
            site++;
            var gl = gatesJson[l];
            if (gl.ValueKind != JsonValueKind.Array) Fail(s, $"data.gates[{l}] must be a list");
            if (C.AttnOnly) { if (gl.GetArrayLength() != 0) Fail(s, "an attention-only model has no gates"); continue; }
            if (gl.ValueKind != JsonValueKind.Array || gl.GetArrayLength() != m) Fail(s, $"data.gates[{l}] needs d_mlp = {m} entries");
            var g = gl.EnumerateArray().Select(x => x.TryGetInt32(out int v) && v is 0 or 1 ? v == 1 : throw new Rejection(s.Id, s.Lemma, "gates are 0 or 1")).ToArray();
            string mm = $"blocks.{l}.mlp.";
            var bmid = Bias(site);
            var wOut = P(mm + "W_out");
            var ln2 = NormTab.Of(_w, $"blocks.{l}.ln2.", C.Normalization, mid, bmid);
            var u = (ln2?.In ?? mid).Select(r => Forward.Lin(r, P(mm + "W_in"), 0, d, m)).ToArray();
            R[]? u0 = ln2 is null ? null : Forward.Lin(ln2.In0, P(mm + "W_in"), 0, d, m);
            R[]? ub = ln2?.BiasPart(P(mm + "W_in"), 0, d, m, P(mm + "b_in"), 0);
            var c = ln2 is null ? Forward.Lin(bmid, P(mm + "W_in"), 0, d, m, P(mm + "b_in")) : Forward.Plus(u0!, ub!);
            R[] Gate(R[] x) => x.Select((v, k) => g[k] ? v : R.Zero).ToArray();
            var mi = u.Select(x => Forward.Lin(Gate(x), wOut, 0, m, d)).ToArray();
            var e = Enumerable.Range(0, n).Select(i => ln2 is null ? Forward.Minus(Forward.Plus(mid[i], mi[i]), Row(i, site + 1)) : Forward.Minus(mid[i], Row(i, site + 1))).ToArray();
            var e0 = Forward.Minus(Forward.Plus(bmid, Forward.Lin(c.Select(x => ArchIntervals.Act(C.Act, x)).ToArray(), wOut, 0, m, d, P(mm + "b_out"))), Bias(site + 1));
            mlp[l] = new MlpTab
            {
                U = u, C = c, G = g, E = e, E0 = e0,
                WoutRow = Enumerable.Range(0, m).Select(k => U.Norm(new ArraySegment<double>(wOut, k * d, d))).ToArray(),
                Norm = ln2, U0 = u0, Ub = ub, M = ln2 is null ? null : mi, M0 = ln2 is null ? null : Forward.Lin(Gate(u0!), wOut, 0, m, d),
            };
            site++;
        }
        var wu = P("unembed.W_U");
        var lastRows = Enumerable.Range(0, n).Select(i => Row(i, site)).ToArray();
        var lnf = NormTab.Of(_w, "ln_final.", C.FinalNorm, lastRows, Bias(site));
        _tables = new Tabs
        {
            Attn = attn, Mlp = mlp,
            Unembed = (lnf?.In ?? lastRows).Select(r => Forward.Lin(r, wu, 0, d, V)).ToArray(),
            Unembed0 = Forward.Lin(lnf?.In0 ?? Bias(site), wu, 0, d, V, lnf is null ? P("unembed.b_U") : null),
            UnembedNorm = lnf, UnembedB = lnf?.BiasPart(wu, 0, d, V, P("unembed.b_U"), 0),
        };
        long own = Costs.Tables(C, n) + T3Costs.Tables(C, n);
        Cost(s, own, false); _ownFlops += own;
        return new Info { Lemma = "T1-table" };
    }

    /// <summary>T1, and T3 with ln1's per-token scale <paramref name="iota"/> (null: none).</summary>
    /// T3 also: layer <paramref name="l"/>'s divisor D_l and window FirstKey(l, t) ≤ s ≤ t (the pattern is indexed s − first).
    Forward.Attn TableAttention(AttnTab at, (int Index, double Value)[][] f, R[]? iota, int l)
    {
        R Io(int t) => iota is null ? R.One : iota[t];
        int T = f.Length, H = C.NHeads, d = C.DModel;
        var scale = R.One / ArchIntervals.Divisor(C, l);
        var Q = new R[H][][]; var K = new R[H][][]; var V = new R[H][][]; var Pat = new R[H][][];
        var o = Enumerable.Range(0, T).Select(_ => Enumerable.Repeat(R.Zero, d).ToArray()).ToArray();
        for (int h = 0; h < H; h++)
        {
            Q[h] = f.Select((x, t) => NormTab.Scaled(Combine(x, at.Q[h], at.Q0[h]), Io(t), at.Qb?[h])).ToArray();
            K[h] = f.Select((x, t) => NormTab.Scaled(Combine(x, at.K[h], at.K0[h]), Io(t), at.Kb?[h])).ToArray();
            V[h] = f.Select((x, t) => NormTab.Scaled(Combine(x, at.V[h], at.V0[h]), Io(t), at.Vb?[h])).ToArray();
            var ov = f.Select((x, t) => NormTab.Scaled(Combine(x, at.OV[h], at.OV0[h]), Io(t), at.OVb?[h])).ToArray();
            Pat[h] = new R[T][];
            for (int t = 0; t < T; t++)
            {
                int first = C.FirstKey(l, t);
                var sg = new R[t - first + 1];
                for (int u = first; u <= t; u++) sg[u - first] = Forward.Dot(Q[h][t], K[h][u]) * scale;
                Pat[h][t] = Forward.Softmax(sg);
                for (int u = first; u <= t; u++) for (int i = 0; i < d; i++) o[t][i] = o[t][i] + Pat[h][t][u - first] * ov[u][i];
            }
        }
        return new Forward.Attn(Q, K, V, Pat, o);
    }
}

/// <summary>FLOP counts per lemma (spec/costs.md), from the shapes alone, for every architecture: normalisations, gated
/// MLPs, rotary rotations, grouped-query key/value heads and local windows add their terms (all zero on the basic model).</summary>
public static class Costs
{
    public static long Norm(long n) => 2 * n + 1;
    public static long CrossEntropy(long v) => 3 * v + 1;

    /// <summary>Per position: the MLP's products and element-wise steps; gated adds x·W_gate and the product with it.</summary>
    public static long Mlp(ModelConfig c)
    {
        long d = c.DModel, m = c.DMlp, products = c.GatedMlp ? 3 : 2, elementwise = c.GatedMlp ? 3 : 2;
        return products * 2 * d * m + elementwise * m + d;
    }

    /// <summary>LayerNorm (LN, LNPre) / RMSNorm (RMS, RMSPre) of one d-vector (spec/costs.md): mean, centring (LN only),
    /// square sum, eps and root, scaling; w and b, when the kind has them, d each.</summary>
    public static long LayerNorm(ModelConfig c, NormKind k)
    {
        if (k == NormKind.None) return 0;
        long d = c.DModel;
        bool centred = k is NormKind.LN or NormKind.LNPre;
        long f = (centred ? (d + 1) + d : 1) + 2 * d + 1 + d;   // (mean, centre | mean of squares' division) + square sum + eps·sqrt + scale
        if (k is NormKind.LN or NormKind.RMS) f += d;            // · w
        if (k is NormKind.LN) f += d;                            // + b
        return f;
    }

    /// <summary>Keys attended by query t in layer l (the window of a local layer).</summary>
    static long Window(ModelConfig c, int l, int t) => t - c.FirstKey(l, t) + 1;

    /// <summary>Rotations of q or k vectors: 6 FLOPs per pair of rotated dimensions.</summary>
    static long Rotations(ModelConfig c, long vectors) => c.Rotary ? 3L * c.RotaryDim * vectors : 0;

    /// <summary>The attention sublayer of layer l over T positions (without ln1).</summary>
    public static long Attention(ModelConfig c, int T, int l = 0) => AttentionAt(c, T, T, Attended(c, T, l));

    /// <summary>The attention sublayer with k and v at all T positions and everything else (q, scores, softmax, p·v, W_O,
    /// b_O) at <paramref name="queries"/> of them, which attend <paramref name="pairs"/> keys in all.</summary>
    static long AttentionAt(ModelConfig c, long T, long queries, long pairs)
    {
        long d = c.DModel, H = c.NHeads, kv = c.KvHeads, dh = c.DHead, p = queries;
        long Proj(long n) => 2 * n * d * dh + n * dh;
        return 2 * kv * Proj(T) + H * Proj(p) + Rotations(c, kv * T + H * p) + H * pairs * (2 * dh + 1) + H * (4 * pairs + p) + H * pairs * 2 * dh
               + H * 2 * p * dh * d + p * d;
    }

    /// <summary>Layer l over T positions: ln1, attention, its residual add, and (unless attention-only) ln2, the MLP and its add.</summary>
    static long Layer(ModelConfig c, int T, int l, long ln) =>
        T * ln + Attention(c, T, l) + T * (long)c.DModel + (c.AttnOnly ? 0 : T * (ln + Mlp(c) + c.DModel));

    static long EmbedCost(ModelConfig c, long T) => c.Rotary ? 0 : T * c.DModel;

    public static long Forward(ModelConfig c, int T, int labelled)
    {
        long d = c.DModel, V = c.DVocabOut, ln = LayerNorm(c, c.Normalization), f = EmbedCost(c, T);
        for (int l = 0; l < c.NLayers; l++) f += Layer(c, T, l, ln);
        return f + T * LayerNorm(c, c.FinalNorm) + labelled * (2 * d * V + V) + labelled * CrossEntropy(V);
    }

    /// <summary>Brute force (BF, BFB; proofs/BF-brute-force.md): the last layer only where it is read — ln1, k and v at every
    /// position, everything else at the labelled positions P; pairs_P = Σ_{t∈P} (keys attended by t).</summary>
    public static long BruteForce(ModelConfig c, int[] labels)
    {
        long d = c.DModel, V = c.DVocabOut, T = labels.Length, p = 0, pairs = 0;
        long ln = LayerNorm(c, c.Normalization), mlp = c.AttnOnly ? 0 : Mlp(c);
        for (int t = 0; t < labels.Length; t++) if (labels[t] >= 0) { p++; pairs += Window(c, c.NLayers - 1, t); }
        long f = EmbedCost(c, T);
        for (int l = 0; l + 1 < c.NLayers; l++) f += Layer(c, (int)T, l, ln);
        f += T * ln + AttentionAt(c, T, p, pairs) + p * d + (c.AttnOnly ? 0 : p * (ln + mlp + d));
        return f + p * LayerNorm(c, c.FinalNorm) + p * (2 * d * V + V) + p * CrossEntropy(V);
    }

    public static long TrivialTable(ModelConfig c, int t)
    {
        long d = c.DModel, H = c.NHeads, kv = c.KvHeads, dh = c.DHead, V = c.DVocabOut, ln = LayerNorm(c, c.Normalization);
        long f = (long)c.DVocab * d + EmbedCost(c, 1);
        for (int l = 0; l < c.NLayers; l++)
            f += ln + kv * (2 * d * dh + dh + 2 * Window(c, l, t) * dh) + H * 2 * dh * d + 2 * d + (c.AttnOnly ? 0 : ln + Mlp(c) + d);
        return f + LayerNorm(c, c.FinalNorm) + V * (V * (2 * d + 1) + CrossEntropy(V));
    }

    static long OpNorm(long r, long k) => 5 * r * k + r + k + 4;

    public static long Norms(ModelConfig c)
    {
        long d = c.DModel, m = c.DMlp, V = c.DVocabOut;
        long f = 4L * c.NLayers * c.NHeads * OpNorm(d, c.DHead);
        if (!c.AttnOnly) f += c.NLayers * (OpNorm(d, m) + OpNorm(m, d) + 2 + m * (2 * Norm(d) + 2) + 2 * m * Norm(d));
        return f + V * (V - 1) * (3 * d + 2);
    }

    public static long Perturbation(ModelConfig c, int T, int l = 0)
    {
        long H = c.NHeads, dh = c.DHead, pairs = Attended(c, T, l);
        return H * (2 * T * Norm(dh) + 9 * pairs + 4 * T + 2 * dh * pairs + pairs * (dh + Norm(dh)) + 4 * T);
    }

    /// <summary>The (query, key) pairs layer l attends over T positions: T(T+1)/2 when global, the windows when local.</summary>
    public static long Attended(ModelConfig c, int T, int l)
    {
        long p = 0;
        for (int t = 0; t < T; t++) p += Window(c, l, t);
        return p;
    }

    public static long TableAttention(ModelConfig c, (int Index, double Value)[][] f, int l = 0)
    {
        long d = c.DModel, H = c.NHeads, dh = c.DHead, T = f.Length, pairs = Attended(c, f.Length, l), nnz = f.Sum(x => (long)x.Length);
        return H * (2 * nnz * (3 * dh + d) + T * (3 * dh + d)) + H * (pairs * (2 * dh + 1) + 4 * pairs + T) + H * pairs * 2 * d
               + 2 * nnz * d + T * d + T * (d + Norm(d));
    }

    public static long Tables(ModelConfig c, long n)
    {
        long d = c.DModel, H = c.NHeads, dh = c.DHead, m = c.DMlp, V = c.DVocabOut, f = 0;
        for (int l = 0; l < c.NLayers; l++)
        {
            f += (n + 1) * H * (6 * d * dh + 2 * dh * d) + n * d + 2 * d;
            if (!c.AttnOnly) f += (n + 1) * 2 * d * m + m + n * (2 * m * d + 2 * d) + 2 * m * d + 3 * d + 2 * m * Norm(d);
        }
        return f + (n + 1) * 2 * d * V + V;
    }
}
