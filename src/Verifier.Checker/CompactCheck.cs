using System.Text.Json;
using Verifier.Core;

namespace Verifier.Checker;

/// <summary>crosscoder-compact and mixed (proofs/CT-compact-tables.md, CC-compact-sequence.md): the checker builds
/// its own tables at the CT step, then recomputes each CC step's whole sequence bound from the artefacts and the
/// step's own advice; BF steps of mixed also certify their accuracy count; MEAN certifies b₀ and accuracy_lb.</summary>
public sealed partial class TranscriptChecker
{
    sealed class CompactTabs
    {
        public required R[][] H0;
        public required R[][][] Q, K, VO;
        public R[][]? U;
        public R[]? C0;
        public R[][]? G;
        public double[] WinCol = [], WoutRow = [];
        public double KMlp;
        public required double[][] UD;
        public required int Site;               // the crosscoder's index of the site CC decodes at
    }
    CompactTabs? _compact;

    string CompactSiteName => C.AttnOnly ? "blocks.0.hook_resid_post" : "blocks.0.hook_resid_mid";

    // ---- CT ----------------------------------------------------------------------------------------------------------
    Info CompactTableStep(Step s)
    {
        if (s.Inputs.Length != 0) Fail(s, "inputs: CT uses none");
        if (s.Claim.EnumerateObject().Any()) Fail(s, "CT claims nothing (the checker builds its own tables)");
        if (s.Data is not null) Fail(s, "CT takes no advice");
        if (_compact is not null) Fail(s, "a second CT step");
        if (C.NLayers != 1) Fail(s, $"CT/CC cover one-layer models; this model has {C.NLayers} layers");
        var cc = _cc!;
        if (cc.Config.DModel != C.DModel) Fail(s, $"the crosscoder's d_model {cc.Config.DModel} differs from the model's {C.DModel}");
        foreach (var site in cc.Config.Sites)
            if (!Sites.Contains(site)) Fail(s, $"the crosscoder's site '{site}' is not a residual site of the model");
        int ccSite = cc.Config.Sites.ToList().IndexOf(CompactSiteName);
        if (ccSite < 0) Fail(s, $"the crosscoder has no site {CompactSiteName}");
        int d = C.DModel, dh = C.DHead, H = C.NHeads, m = C.DMlp, V = C.DVocabOut, n = cc.Config.Width, S = cc.Config.Sites.Count;
        double[] P(string name) => _w[name].Data;
        var h0 = new R[C.DVocab * C.NCtx][];
        for (int x = 0; x < C.DVocab; x++) for (int t = 0; t < C.NCtx; t++) h0[x * C.NCtx + t] = _f.Embed(x, t);
        const string a = "blocks.0.attn.";
        R[][] Per(string wn, string bn, int h) => h0.Select(e => Forward.Lin(e, P(a + wn), h * d * dh, d, dh, P(a + bn), h * dh)).ToArray();
        var tabs = new CompactTabs
        {
            H0 = h0, Site = ccSite,
            Q = Enumerable.Range(0, H).Select(h => Per("W_Q", "b_Q", h)).ToArray(),
            K = Enumerable.Range(0, H).Select(h => Per("W_K", "b_K", h)).ToArray(),
            VO = Enumerable.Range(0, H).Select(h => Per("W_V", "b_V", h).Select(v => Forward.Lin(v, P(a + "W_O"), h * dh * d, dh, d)).ToArray()).ToArray(),
            UD = new double[V][],
        };
        var wu = P("unembed.W_U");
        for (int v = 0; v < V; v++) tabs.UD[v] = new double[V];
        for (int v = 0; v < V; v++)
            for (int y = v + 1; y < V; y++)
            {
                double acc = 0;
                for (int j = 0; j < d; j++) { var diff = R.Of(wu[j * V + v]) - R.Of(wu[j * V + y]); acc = U.Add(acc, U.Mul(diff.Mag, diff.Mag)); }
                tabs.UD[v][y] = tabs.UD[y][v] = U.Sqrt(acc);
            }
        if (!C.AttnOnly)
        {
            var win = P("blocks.0.mlp.W_in"); var wout = P("blocks.0.mlp.W_out");
            var dec = cc["W_dec"].Data; var bdec = cc["b_dec"].Data;
            tabs.U = Enumerable.Range(0, n).Select(i => Forward.Lin(Enumerable.Range(0, d).Select(j => R.Of(dec[(i * S + ccSite) * d + j])).ToArray(), win, 0, d, m)).ToArray();
            tabs.C0 = Forward.Lin(Enumerable.Range(0, d).Select(j => R.Of(bdec[ccSite * d + j])).ToArray(), win, 0, d, m, P("blocks.0.mlp.b_in"));
            tabs.WinCol = Enumerable.Range(0, m).Select(k => U.Norm(Enumerable.Range(0, d).Select(i => win[i * m + k]))).ToArray();
            tabs.WoutRow = Enumerable.Range(0, m).Select(k => U.Norm(Enumerable.Range(0, d).Select(i => wout[k * d + i]))).ToArray();
            double perNeuron = 0;
            for (int k = 0; k < m; k++) perNeuron = U.Add(perNeuron, U.Mul(tabs.WinCol[k], tabs.WoutRow[k]));
            tabs.KMlp = Math.Min(U.Mul(OpNorm(win, 0, d, m), OpNorm(wout, 0, m, d)), perNeuron);
            tabs.G = Enumerable.Range(0, m).Select(k => Forward.Lin(Enumerable.Range(0, d).Select(i => R.Of(wout[k * d + i])).ToArray(), wu, 0, d, V)).ToArray();
        }
        _compact = tabs;
        long own = CompactCosts.Tables(C, n);
        Cost(s, own, false); _ownFlops += own;
        return new Info { Lemma = s.Lemma };
    }

    // ---- CC ----------------------------------------------------------------------------------------------------------
    Info CompactSequenceStep(Step s)
    {
        if (s.Inputs.Length != 1) Fail(s, "inputs: CC takes exactly the CT step");
        Input(s, 0, "CT");
        var tab = _compact!;
        var seq = Seq(s);
        int q = s.ScopeInt("sequence"), T = seq.Tokens.Length;
        if (s.ScopeStr("site") != CompactSiteName) Fail(s, $"scope.site must be {CompactSiteName}");
        var f = Features(s, T);
        foreach (var ft in f) _adviceBits += AdviceBits(_cc!.Config.Width, ft.Length);
        int d = C.DModel, H = C.NHeads, m = C.DMlp, V = C.DVocabOut, S = _cc!.Config.Sites.Count, cs = tab.Site;
        double[] P(string name) => _w[name].Data;
        var dec = _cc["W_dec"].Data; var bdec = _cc["b_dec"].Data; var bo = P("blocks.0.attn.b_O");
        var scale = R.One / R.Sqrt(R.Of(C.DHead));
        int Key(int t) => seq.Tokens[t] * C.NCtx + t;
        double sum = 0; long correct = 0, own = 0;
        for (int t = 0; t < T; t++)
        {
            int y = seq.Labels[t];
            if (y < 0) continue;
            // h_mid (or h_post, attention-only) at t: h⁰ + b_O + Σ_heads Σ_{s≤t} p_s (v_s W_O), p from the exact scores.
            var h = (R[])tab.H0[Key(t)].Clone();
            for (int i = 0; i < d; i++) h[i] = h[i] + R.Of(bo[i]);
            for (int hh = 0; hh < H; hh++)
            {
                var sigma = new R[t + 1];
                for (int u = 0; u <= t; u++) sigma[u] = Forward.Dot(tab.Q[hh][Key(t)], tab.K[hh][Key(u)]) * scale;
                var p = Forward.Softmax(sigma);
                for (int u = 0; u <= t; u++) for (int i = 0; i < d; i++) h[i] = h[i] + p[u] * tab.VO[hh][Key(u)][i];
            }
            // a' from the advice; ε = ‖h − a'‖ (h is the true activation, so any advice gives a true ε).
            var ap = new R[d];
            for (int i = 0; i < d; i++) ap[i] = R.Of(bdec[cs * d + i]);
            foreach (var (j, v) in f[t]) for (int i = 0; i < d; i++) ap[i] = ap[i] + dec[(j * S + cs) * d + i] * R.Of(v);
            double eps = U.Norm(Forward.Minus(h, ap)), post = eps;
            var hp = ap;
            var live = new List<int>();
            var delta = new R[m];
            if (!C.AttnOnly)
            {
                var pre = (R[])tab.C0!.Clone();
                foreach (var (j, v) in f[t]) for (int k = 0; k < m; k++) pre[k] = pre[k] + tab.U![j][k] * R.Of(v);
                double act = 0;
                for (int k = 0; k < m; k++)
                {
                    double r = U.Mul(eps, tab.WinCol[k]);
                    if (U.Add(pre[k].Hi, r) > 0) { act = U.Add(act, U.Mul(tab.WinCol[k], tab.WoutRow[k])); live.Add(k); }
                    delta[k] = R.Relu(new R(Math.BitDecrement(pre[k].Lo - r), U.Add(pre[k].Hi, r))) - R.Relu(pre[k]);
                }
                post = U.Add(eps, U.Mul(Math.Min(act, tab.KMlp), eps));
                hp = Forward.Plus(ap, Forward.Lin(pre.Select(R.Relu).ToArray(), P("blocks.0.mlp.W_out"), 0, m, d, P("blocks.0.mlp.b_out")));
            }
            var z = _f.Logits(hp);
            var diffs = new R[V - 1];
            bool right = true;
            for (int v = 0, k = 0; v < V; v++)
            {
                if (v == y) continue;
                var dz = z[v] - z[y];
                double global = U.Mul(post, tab.UD[v][y]), bound = global;
                if (!C.AttnOnly)
                {
                    var acc = R.Zero;
                    foreach (int mm in live) acc = acc + delta[mm] * (tab.G![mm][v] - tab.G[mm][y]);
                    bound = Math.Min(global, U.Add(U.Mul(eps, tab.UD[v][y]), Math.Max(0, acc.Hi)));
                }
                var up = U.Add(dz.Hi, bound);
                diffs[k++] = new R(Math.BitDecrement(dz.Lo - global), up);
                if (!(up < 0)) right = false;
            }
            sum = U.Add(sum, Forward.CeFromDiffs(diffs).Hi);
            if (right) correct++;
            own += CompactCosts.Position(C, t, f[t].Length, live.Count);
        }
        double claim = s.Number("loss_sum");
        Certify(s, $"loss_sum of sequence {q}", claim, sum);
        var errors = Errors(s, seq.LabelledCount - correct, seq.LabelledCount, $"of sequence {q}");
        Cost(s, own, true); _ownFlops += own;
        return new Info { Lemma = s.Lemma, Sequence = q, Scalar = claim, Errors = errors };
    }
}

/// <summary>The checker's own count of the compact lemmas' FLOPs (spec/costs.md).</summary>
public static class CompactCosts
{
    public static long Tables(ModelConfig c, int width)
    {
        long d = c.DModel, dh = c.DHead, H = c.NHeads, m = c.DMlp, V = c.DVocabOut, keys = (long)c.DVocab * c.NCtx;
        long f = keys * d + H * keys * 2 * (2 * d * dh + dh) + H * keys * (2 * d * dh + dh + 2 * dh * d);
        if (!c.AttnOnly)
        {
            long opNorms = (5 * d * m + d + m + 4) * 2 + 1 + m * (2 * Costs.Norm(d) + 2) + 1;
            f += width * 2 * d * m + 2 * d * m + m + 2 * m * Costs.Norm(d) + opNorms + 2 * m * d * V;
        }
        return f + V * (V - 1) / 2 * (3 * d + 2);
    }

    public static long Position(ModelConfig c, int t, long nnz, long live)
    {
        long d = c.DModel, dh = c.DHead, H = c.NHeads, m = c.DMlp, V = c.DVocabOut, keys = t + 1;
        long f = 3 * d + H * (keys * (2 * dh + 1) + 4 * keys + 1 + 2 * d * keys);
        f += 2 * d * nnz + 2 * d + Costs.Norm(d);
        if (!c.AttnOnly) f += 2 * nnz * m + 2 * m * d + 8 * m + 2 * d + 4 + 4 * m + (V - 1) * (3 * live + 1);
        return f + 2 * d * V + 5 * V + Costs.CrossEntropy(V) + 1;
    }

}
