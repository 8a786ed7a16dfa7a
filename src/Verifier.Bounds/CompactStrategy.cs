using System.Text.Json.Nodes;
using Verifier.Core;

namespace Verifier.Bounds;

/// <summary>The dataset-independent tables of crosscoder-compact (proofs/CT-compact-tables.md), as enclosures:
/// per head and (token, position) key, q, k and v·W_O of the one-layer model's embedding; the MLP's per-feature
/// pre-activation table U_i = W_dec^mid[i] W_in with its bias part C0 = b_dec^mid W_in + b_in; ‖W_in[:, m]‖,
/// ‖W_out[m, :]‖ and the global K_mlp; and ‖u_v − u_y‖ for every pair of unembedding columns.</summary>
public sealed class CompactTables
{
    public required Iv[][] H0;            // [token·n_ctx + t] → h⁰ (d)
    public required Iv[][][] Q, K, VO;     // [head][key] → q (d_head), k (d_head), v W_O (d)
    public Iv[][]? U;                      // [feature] → U_i (d_mlp); null for attention-only models
    public Iv[]? C0;                       // d_mlp
    public Iv[][]? G;                      // [neuron] → W_out[m, :] W_U (d_vocab_out)
    public double[] WinCol = [], WoutRow = [];
    public double KMlp;
    public required double[][] UD;        // [v][y] ≥ ‖u_v − u_y‖
    public required long Flops;

    public int Key(ModelConfig c, int token, int t) => token * c.NCtx + t;

    /// <summary>The crosscoder site crosscoder-compact decodes at: resid_mid of the one layer, or resid_post for an
    /// attention-only model.</summary>
    public static string SiteName(ModelConfig c) => c.AttnOnly ? "blocks.0.hook_resid_post" : "blocks.0.hook_resid_mid";

    /// <summary>Refuses (by name) what the lemma does not cover.</summary>
    public static int CheckSupported(ModelConfig c, CrosscoderWeights cc)
    {
        if (c.NLayers != 1)
            throw new UsageException($"crosscoder-compact (proofs/CC-compact-sequence.md) covers one-layer models; this model has {c.NLayers} layers. Use crosscoder-exhaustive or brute-force.");
        if (cc.Config.DModel != c.DModel) throw new UsageException($"the crosscoder's d_model {cc.Config.DModel} differs from the model's {c.DModel}");
        int site = cc.Config.Sites.ToList().IndexOf(SiteName(c));
        if (site < 0) throw new UsageException($"crosscoder-compact needs the crosscoder site {SiteName(c)}; this one has {string.Join(", ", cc.Config.Sites)}");
        return site;
    }

    public static CompactTables Build(ModelWeights w, CrosscoderWeights cc, int ccSite)
    {
        var c = w.Config; int d = c.DModel, dh = c.DHead, H = c.NHeads, m = c.DMlp, V = c.DVocabOut, keys = c.DVocab * c.NCtx;
        double[] P(string n) => w[n].Data;
        var model = new IntervalModel(w);
        var h0 = new Iv[keys][];
        for (int x = 0; x < c.DVocab; x++) for (int pos = 0; pos < c.NCtx; pos++) h0[x * c.NCtx + pos] = model.Embed(x, pos);
        const string a = "blocks.0.attn.";
        Iv[][] Per(string wn, string bn, int h) => h0.Select(e => IntervalModel.Affine(e, P(a + wn), h * d * dh, d, dh, P(a + bn), h * dh)).ToArray();
        var Q = Enumerable.Range(0, H).Select(h => Per("W_Q", "b_Q", h)).ToArray();
        var K = Enumerable.Range(0, H).Select(h => Per("W_K", "b_K", h)).ToArray();
        var VO = Enumerable.Range(0, H).Select(h => Per("W_V", "b_V", h).Select(v => IntervalModel.Affine(v, P(a + "W_O"), h * dh * d, dh, d, null, 0)).ToArray()).ToArray();
        var wu = P("unembed.W_U");
        var ud = new double[V][];
        for (int v = 0; v < V; v++) ud[v] = new double[V];
        for (int v = 0; v < V; v++)
            for (int y = v + 1; y < V; y++)
            {
                double s = 0;
                for (int j = 0; j < d; j++) { var diff = Iv.Point(wu[j * V + v]) - Iv.Point(wu[j * V + y]); s = Up.Add(s, Up.Mul(diff.Mag, diff.Mag)); }
                ud[v][y] = ud[y][v] = Up.Sqrt(s);
            }
        var t = new CompactTables { H0 = h0, Q = Q, K = K, VO = VO, UD = ud, Flops = CompactFlops.Tables(c, cc.Config.Width) };
        if (!c.AttnOnly)
        {
            var win = P("blocks.0.mlp.W_in"); var wout = P("blocks.0.mlp.W_out");
            var dec = cc["W_dec"].Data; var bdec = cc["b_dec"].Data; int S = cc.Config.Sites.Count;
            t.U = Enumerable.Range(0, cc.Config.Width).Select(i =>
                IntervalModel.Affine(Enumerable.Range(0, d).Select(j => Iv.Point(dec[(i * S + ccSite) * d + j])).ToArray(), win, 0, d, m, null, 0)).ToArray();
            t.C0 = IntervalModel.Affine(Enumerable.Range(0, d).Select(j => Iv.Point(bdec[ccSite * d + j])).ToArray(), win, 0, d, m, P("blocks.0.mlp.b_in"), 0);
            t.WinCol = Enumerable.Range(0, m).Select(k => Up.Norm(Enumerable.Range(0, d).Select(i => win[i * m + k]))).ToArray();
            t.WoutRow = Enumerable.Range(0, m).Select(k => Up.Norm(Enumerable.Range(0, d).Select(i => wout[k * d + i]))).ToArray();
            t.KMlp = OperatorNorms.MlpLipschitz(win, wout, d, m);
            var wuT = P("unembed.W_U");
            t.G = Enumerable.Range(0, m).Select(k => IntervalModel.Affine(Enumerable.Range(0, d).Select(i => Iv.Point(wout[k * d + i])).ToArray(), wuT, 0, d, V, null, 0)).ToArray();
        }
        return t;
    }
}

/// <summary>FLOP counts of the compact lemmas (spec/costs.md, rows CT, CC, MEAN of the compact strategies).</summary>
public static class CompactFlops
{
    public static long Tables(ModelConfig c, int width)
    {
        long d = c.DModel, dh = c.DHead, H = c.NHeads, m = c.DMlp, V = c.DVocabOut, keys = (long)c.DVocab * c.NCtx;
        long f = keys * d + H * keys * 2 * (2 * d * dh + dh) + H * keys * (2 * d * dh + dh + 2 * dh * d);
        if (!c.AttnOnly) f += width * 2 * d * m + 2 * d * m + m + 2 * m * Verifier.Bounds.Flops.Norm(d) + OperatorNorms.MlpLipschitzFlops(c.DModel, c.DMlp) + 2 * m * d * V;
        return f + V * (V - 1) / 2 * (3 * d + 2);
    }

    /// <summary>One labelled position t with nnz advice features and <paramref name="live"/> neurons not provably inactive.</summary>
    public static long Position(ModelConfig c, int t, long nnz, long live)
    {
        long d = c.DModel, dh = c.DHead, H = c.NHeads, m = c.DMlp, V = c.DVocabOut, keys = t + 1;
        long f = 3 * d + H * (keys * (2 * dh + 1) + 4 * keys + 1 + 2 * d * keys);   // h⁰, scores, softmax, Σ p v W_O, b_O, h_mid
        f += 2 * d * nnz + d + d + Verifier.Bounds.Flops.Norm(d);                    // a', h_mid − a', ε
        if (!c.AttnOnly) f += 2 * nnz * m + 2 * m * d + 8 * m + 2 * d + 4           // pre', active test, K, ReLU, W_out, ε_post
                              + 4 * m + (V - 1) * (3 * live + 1);                   // δ intervals; per label Σ_live δ·(G_v − G_y), min
        return f + 2 * d * V + V + 4 * V + Verifier.Bounds.Flops.CrossEntropy(V) + 1;
    }


}

/// <summary>One sequence's compact bound: the loss-sum claim (with slack), the certified number of correctly
/// classified positions, and per labelled position ε at the crosscoder site, ε after the MLP and the CE bound.</summary>
public sealed record CompactSequence(double LossSum, int Correct, long Flops, double[] EpsSite, double[] EpsPost, double[] PositionBound);

/// <summary>crosscoder-compact and mixed (proofs/CC-compact-sequence.md, CT-compact-tables.md, MEAN-aggregation.md):
/// one self-contained CC step per sequence that uses only the CT tables. h⁰ is exact, the layer's attention at each
/// labelled position is exact from the (token, position) tables, so ε at the crosscoder site is the exact distance
/// of the true activation to the decoded advice; the MLP is crossed with the better of the global and the
/// active-set Lipschitz constant, and the loss through per-label logit differences. mixed replaces the loosest
/// sequences by brute force (BF) within a FLOP budget.</summary>
public static class CompactStrategy
{
    public static CompactSequence Bound(ModelWeights w, CompactTables tab, CrosscoderWeights cc, int ccSite, Sequence seq, (int Index, double Value)[][] f)
    {
        var c = w.Config; int d = c.DModel, H = c.NHeads, m = c.DMlp, V = c.DVocabOut, S = cc.Config.Sites.Count;
        double[] P(string n) => w[n].Data;
        var dec = cc["W_dec"].Data; var bdec = cc["b_dec"].Data;
        var scale = Iv.Point(1) / Iv.Sqrt(Iv.Point(c.DHead));
        var bo = P("blocks.0.attn.b_O");
        double sum = 0; int correct = 0; long flops = 0;
        var epsSite = new List<double>(); var epsPost = new List<double>(); var bounds = new List<double>();
        for (int t = 0; t < seq.Tokens.Length; t++)
        {
            int y = seq.Labels[t];
            if (y < 0) continue;
            // The true activation at the crosscoder site, exactly (up to rounding): h⁰ + exact attention.
            var h = (Iv[])tab.H0[tab.Key(c, seq.Tokens[t], t)].Clone();
            for (int i = 0; i < d; i++) h[i] += Iv.Point(bo[i]);
            for (int hh = 0; hh < H; hh++)
            {
                var q = tab.Q[hh][tab.Key(c, seq.Tokens[t], t)];
                var sigma = new Iv[t + 1];
                for (int s = 0; s <= t; s++) sigma[s] = IntervalModel.Dot(q, tab.K[hh][tab.Key(c, seq.Tokens[s], s)]) * scale;
                var p = IntervalModel.Softmax(sigma);
                for (int s = 0; s <= t; s++)
                {
                    var vo = tab.VO[hh][tab.Key(c, seq.Tokens[s], s)];
                    for (int i = 0; i < d; i++) h[i] += p[s] * vo[i];
                }
            }
            // The decoded advice and its exact distance ε.
            var ap = new Iv[d];
            for (int i = 0; i < d; i++) ap[i] = Iv.Point(bdec[ccSite * d + i]);
            foreach (var (j, v) in f[t]) for (int i = 0; i < d; i++) ap[i] += dec[(j * S + ccSite) * d + i] * Iv.Point(v);
            double eps = IntervalModel.NormUpper(IntervalModel.Sub(h, ap));
            double post = eps;
            var hp = ap;
            var live = new List<int>();
            var delta = new Iv[m];
            if (!c.AttnOnly)
            {
                var pre = (Iv[])tab.C0!.Clone();
                foreach (var (j, v) in f[t]) for (int k = 0; k < m; k++) pre[k] += tab.U![j][k] * Iv.Point(v);
                double act = 0;
                for (int k = 0; k < m; k++)
                {
                    double r = Up.Mul(eps, tab.WinCol[k]);
                    if (Up.Add(pre[k].Hi, r) > 0) { act = Up.Add(act, Up.Mul(tab.WinCol[k], tab.WoutRow[k])); live.Add(k); }
                    // δ_m = ReLU(u_m) − ReLU(u'_m) with u_m ∈ [u'_m − r_m, u'_m + r_m].
                    delta[k] = Iv.Relu(new Iv(Math.BitDecrement(pre[k].Lo - r), Up.Add(pre[k].Hi, r))) - Iv.Relu(pre[k]);
                }
                post = Up.Add(eps, Up.Mul(Math.Min(act, tab.KMlp), eps));
                var mlp = IntervalModel.Affine(pre.Select(Iv.Relu).ToArray(), P("blocks.0.mlp.W_out"), 0, m, d, P("blocks.0.mlp.b_out"), 0);
                hp = IntervalModel.Add(ap, mlp);
            }
            var z = IntervalModel.Affine(hp, P("unembed.W_U"), 0, d, V, P("unembed.b_U"), 0);
            var diffs = new Iv[V - 1];
            bool right = true;
            for (int v = 0, k = 0; v < V; v++)
            {
                if (v == y) continue;
                var dz = z[v] - z[y];
                // Δ_v ≤ ε_post‖u_v − u_y‖ (global), or ε‖u_v − u_y‖ + Σ_live δ_m (G_mv − G_my) (per neuron): the smaller.
                double global = Up.Mul(post, tab.UD[v][y]), up = global;
                if (!c.AttnOnly)
                {
                    var acc = Iv.Zero;
                    foreach (int mm in live) acc += delta[mm] * (tab.G![mm][v] - tab.G[mm][y]);
                    up = Math.Min(global, Up.Add(Up.Mul(eps, tab.UD[v][y]), Math.Max(0, acc.Hi)));
                }
                double hi = Up.Add(dz.Hi, up);
                diffs[k++] = new Iv(Math.BitDecrement(dz.Lo - global), hi);
                if (!(hi < 0)) right = false;
            }
            double ce = IntervalModel.CrossEntropyFromDifferences(diffs).Hi;
            sum = Up.Add(sum, ce);
            flops += CompactFlops.Position(c, t, f[t].Length, live.Count);
            if (right) correct++;
            epsSite.Add(eps); epsPost.Add(post); bounds.Add(ce);
        }
        return new CompactSequence(Claim.Slack(sum), correct, flops, [.. epsSite], [.. epsPost], [.. bounds]);
    }

    /// <summary>Runs crosscoder-compact (<paramref name="budget"/> null) or mixed: compact everywhere, brute force on
    /// the sequences whose compact bound is loosest while the proof's FLOPs stay within budget × brute force's.</summary>
    /// <param name="advice">Replaces the encoder's features (tests: any advice must give a sound transcript).</param>
    public static (double B0, double AccuracyLb, TranscriptCost Cost, int Steps, JsonObject Details) Run(BoundInputs inputs, string path, double? budget,
        IProgress<(int, int)>? progress, CancellationToken ct, Func<int, (int Index, double Value)[][], (int Index, double Value)[][]>? advice = null)
    {
        var w = inputs.Model; var c = w.Config; var cc = inputs.Crosscoder!; var data = inputs.Data;
        int ccSite = CompactTables.CheckSupported(c, cc);
        var tab = CompactTables.Build(w, cc, ccSite);
        var encoder = new PlainCrosscoder(cc, c.SiteNames());
        // Advice: features at the crosscoder site for labelled positions only (others carry no list entries).
        var feats = new (int Index, double Value)[data.Count][][];
        var bounds = new CompactSequence[data.Count];
        for (int q = 0; q < data.Count; q++)
        {
            ct.ThrowIfCancellationRequested();
            var seq = data.Sequences[q];
            var all = encoder.Encode(w, seq.Tokens);
            if (advice is not null) all = advice(q, all);
            feats[q] = all.Select((ft, t) => seq.Labels[t] >= 0 ? ft : []).ToArray();
            bounds[q] = Bound(w, tab, cc, ccSite, seq, feats[q]);
            if (q % 64 == 0 || q == data.Count - 1) progress?.Report((q + 1, data.Count));
        }
        // mixed: brute force on the loosest sequences, as many as the budget allows.
        var brute = new bool[data.Count];
        if (budget is { } b)
        {
            long bfTotal = data.Sequences.Sum(s => Flops.BruteForce(c, s.Labels)) + data.Count + 1;
            long spent = tab.Flops + bounds.Sum(x => x.Flops) + (data.Count + 1L);   // MEAN
            foreach (int q in Enumerable.Range(0, data.Count).OrderByDescending(q => bounds[q].LossSum).ThenBy(q => q))
            {
                long extra = Flops.BruteForce(c, data.Sequences[q].Labels) - bounds[q].Flops;
                if (spent + extra > b * bfTotal) break;
                brute[q] = true; spent += extra;
            }
        }
        string name = budget is null ? Strategies.CrosscoderCompact : Strategies.Mixed;
        var parameters = new JsonObject { ["crosscoder_site"] = CompactTables.SiteName(c) };
        if (budget is { } bb) parameters["budget"] = bb;
        using var tw = new TranscriptWriter(path, inputs.Artefacts(), name, parameters);
        int tableStep = tw.Add(new TranscriptStep("CT", [], BoundProgram.Scope(("tables", "h0 Q K VO U C0 norms unembed_pairs")), new JsonObject(), tab.Flops, DatasetDependent: false));
        var model = new IntervalModel(w);
        var steps = new List<int>(); var sums = new List<double>();
        long errors = 0; double adviceBits = 0;
        for (int q = 0; q < data.Count; q++)
        {
            var seq = data.Sequences[q];
            if (brute[q])
            {
                var (ls, wrong) = BruteForceStrategy.Sequence(model, seq);
                steps.Add(tw.Add(BruteForceStrategy.Step(c, q, seq, ls, wrong)));
                sums.Add(ls); errors += wrong;
                continue;
            }
            var bq = bounds[q];
            foreach (var ft in feats[q]) adviceBits += CrosscoderStrategy.AdviceBits(cc.Config.Width, ft.Length);
            var adv = new JsonObject { ["features"] = new JsonArray(feats[q].Select(ft => (JsonNode)new JsonArray(
                ft.Select(p => (JsonNode)new JsonArray(p.Index, p.Value)).ToArray())).ToArray()) };
            steps.Add(tw.Add(new TranscriptStep("CC", [tableStep], BoundProgram.Scope(("sequence", q), ("site", CompactTables.SiteName(c))),
                new JsonObject { ["loss_sum"] = bq.LossSum, ["errors"] = seq.LabelledCount - bq.Correct }, bq.Flops, DatasetDependent: true, adv)));
            sums.Add(bq.LossSum); errors += seq.LabelledCount - bq.Correct;
        }
        var (b0, final) = BoundProgram.Mean(tw, steps, sums, inputs.Positions, errors);
        double acc = Accuracy.Lower(errors, inputs.Positions);
        var cost = tw.Complete([], b0, final, null, adviceBits);
        return (b0, acc, cost, tw.StepCount, Details(bounds, brute, inputs));
    }

    /// <summary>Where the slack is: ε at the site and after the MLP, the per-sequence compact bounds (quantiles), and
    /// how many sequences brute force took over.</summary>
    static JsonObject Details(CompactSequence[] b, bool[] brute, BoundInputs inputs)
    {
        double Q(IEnumerable<double> xs, double p) { var a = xs.OrderBy(x => x).ToArray(); return a.Length == 0 ? 0 : a[(int)Math.Min(a.Length - 1, Math.Floor(p * a.Length))]; }
        var eps = b.SelectMany(x => x.EpsSite).ToArray(); var post = b.SelectMany(x => x.EpsPost).ToArray();
        var perPos = b.SelectMany(x => x.PositionBound).ToArray();
        var o = new JsonObject
        {
            ["eps_site_mean"] = eps.DefaultIfEmpty().Average(), ["eps_site_max"] = eps.DefaultIfEmpty().Max(),
            ["eps_post_mean"] = post.DefaultIfEmpty().Average(), ["eps_post_max"] = post.DefaultIfEmpty().Max(),
            ["compact_b0"] = perPos.Sum() / inputs.Positions,
            ["position_bound_p50"] = Q(perPos, 0.5), ["position_bound_p90"] = Q(perPos, 0.9), ["position_bound_p99"] = Q(perPos, 0.99), ["position_bound_max"] = perPos.DefaultIfEmpty().Max(),
            ["brute_force_sequences"] = brute.Count(x => x),
        };
        return o;
    }
}
