using Verifier.Core;

namespace Verifier.Bounds.Analysis;

/// <summary>One ranked interaction: features i and j at a place (layer and neuron, or layer and head).</summary>
public sealed record PairMetric(string Metric, int I, int J, int Layer, int Unit, double Value, double Frequency);

public sealed record NeuronError(int Layer, int Neuron, double EMass, double NonzeroFraction);

/// <summary>Spearman ρ of a metric against a target over co-occurring pairs. Targets: "E-measured" (the pair's
/// measured linearisation error) and "b0-removal" (the change in the tables bound's uncapped b₀ when the pair's
/// interaction is removed, <see cref="BoundSensitivity"/>), "b0-removal-abs" (its size, either sign), and "b0-removal-moving" (the same over the pairs whose
/// removal moves b₀ at all).</summary>
public sealed record Validation(string Metric, string Target, double Spearman, int Pairs);

/// <summary>The tables bound with each pair's interaction removed: b₀ (certified form), the uncapped b₀, and how
/// many pairs move each.</summary>
public sealed record BoundRemovalSummary(double B0, double UncappedB0, int PairsTightening, int PairsLoosening,
    int PairsMovingCapped, double LargestUncapped, double LargestCapped)
{
    public int PairsMovingUncapped => PairsTightening + PairsLoosening;
}

/// <summary>Everything `verifier interactions` measures over a model, a crosscoder and a dataset.</summary>
public sealed record InteractionReport(
    long Tokens, int Pairs, IReadOnlyList<NeuronError> Neurons, IReadOnlyList<PairMetric> Ranked,
    IReadOnlyList<Validation> Validation, double AttentionDominance, double DominantShare,
    int[] HeatmapFeatures, double[,] Heatmap, BoundRemovalSummary? BoundRemoval = null)
{
    /// <summary>The measured pairwise linearisation error of every co-occurring pair (i &lt; j), per token.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public IReadOnlyDictionary<(int I, int J), double> Measured { get; init; } = new Dictionary<(int, int), double>();
}

/// <summary>The interaction metrics of BOUNDS.md §3 and issue 6, in plain float64 (no TorchSharp). Notation: at MLP
/// neuron m of layer l, p_im = f_i (W_dec^{mid}[i] W_in)_m; c = b_dec^{mid} W_in + b_in (the bias part, kept apart);
/// the linearisation at c with gate g = 1[c &gt; 0] has error E(S) = act(c + Σ_S p) − act(c) − g Σ_S p for a feature
/// set S. A pair's measured contribution to E is its second-order part I_ij = E({i,j}) − E({i}) − E({j}) (g cancels).
/// Through a normalisation N = ln2 (proofs/T3-normalised-tables.md) the MLP reads N(a'_t) = ι_t(Σ f_i (P W_dec[i]) ⊙ w
/// + (P b_dec) ⊙ w) + b: then U_i = ((P W_dec^{mid}[i]) ⊙ w) W_in, the token's bias point c_t = ι_t U₀ + U_b and p_im = ι_t f_i U_im,
/// ι_t = 1/σ(a'_t) the token's own scale, so I_ij measures the activation's nonlinearity at the token's normalisation
/// (for ReLU exactly the threshold crossings; for GELU/SiLU also their curvature). Attention reads the rows through ln1.</summary>
public static class InteractionAnalysis
{
    /// <param name="BoundRemoval">Also re-run the tables bound with each pair's interaction removed (needs a crosscoder over every site).</param>
    public sealed record Options(int Top = 30, int ScreenTop = 0, int Bins = 4, int HeatmapSize = 24, bool BoundRemoval = false);

    /// <summary>The linearisation error at c with gate g of a pre-activation shift s: ReLU(c + s) − ReLU(c) − g s (float64).</summary>
    public static double E(double c, bool g, double s) => Math.Max(0, c + s) - Math.Max(0, c) - (g ? s : 0);

    /// <summary>The same for any activation: act(c + s) − act(c) − g s.</summary>
    public static double E(ActKind act, double c, bool g, double s) =>
        act == ActKind.Relu ? E(c, g, s) : Activation.Apply(act, c + s) - Activation.Apply(act, c) - (g ? s : 0);

    /// <summary>A normalisation read through decoder rows, in float64: r ↦ (P r) ⊙ w (P centres for LN/LNPre), its bias b
    /// (zero unless LN), and ι(a') = 1/√(‖P a'‖²/d + eps). None: the identity and ι = 1.</summary>
    public sealed class Through(ModelWeights w, string prefix, NormKind kind)
    {
        readonly double[]? _w = kind is NormKind.LN or NormKind.RMS ? w[prefix + "w"].Data : null;
        public double[]? B { get; } = kind == NormKind.LN ? w[prefix + "b"].Data : null;
        public bool Normed => kind != NormKind.None;
        double[] Centre(double[] r)
        {
            if (kind is not (NormKind.LN or NormKind.LNPre)) return r;
            double mean = r.Average();
            return r.Select(x => x - mean).ToArray();
        }
        public double[] In(double[] r) { var p = Centre(r); return _w is null ? p : p.Select((x, j) => x * _w[j]).ToArray(); }
        public double Iota(double[] a)
        {
            if (!Normed) return 1;
            var p = Centre(a);
            return 1 / Math.Sqrt(p.Sum(x => x * x) / p.Length + w.Config.Eps);
        }
    }

    sealed class PairAcc { public double Measured, Screen, SeedAll; public long Cooccur; public int BestLayer, BestNeuron; public double BestSeed; }

    public static InteractionReport Analyse(ModelWeights w, CrosscoderWeights cc, TokenDataset data, Options o, IProgress<(int Done, int Total)>? progress = null)
    {
        w.Config.RequireTablesCover("interactions");
        var c = w.Config; var sites = c.SiteNames();
        int n = cc.Config.Width, d = c.DModel, m = c.DMlp, S = cc.Config.Sites.Count;
        int CcSite(int site) => cc.Config.Sites.ToList().IndexOf(sites[site]);
        var enc = new PlainCrosscoder(cc, sites);
        var features = data.Sequences.Select(s => enc.Encode(w, s.Tokens)).ToArray();
        var tokens = features.SelectMany(f => f).ToArray();
        long T = tokens.Length;
        var dec = cc["W_dec"].Data; var bdec = cc["b_dec"].Data;
        double[] Row(int i, int s) { var r = new double[d]; int cs = CcSite(s); for (int k = 0; k < d; k++) r[k] = dec[(i * S + cs) * d + k]; return r; }
        double[] Bias(int s) { var r = new double[d]; int cs = CcSite(s); for (int k = 0; k < d; k++) r[k] = bdec[cs * d + k]; return r; }
        static double[] Times(double[] x, double[] W, int rows, int cols, int off = 0)
        {
            var y = new double[cols];
            for (int i = 0; i < rows; i++) for (int j = 0; j < cols; j++) y[j] += x[i] * W[off + i * cols + j];
            return y;
        }

        // Mean activation of each feature when active (the scale of f_i in the screen and in B_ij).
        var fired = new long[n]; var fsum = new double[n];
        foreach (var t in tokens) foreach (var (i, v) in t) { fired[i]++; fsum[i] += v; }
        var fbar = Enumerable.Range(0, n).Select(i => fired[i] > 0 ? fsum[i] / fired[i] : 0).ToArray();
        var occurring = Enumerable.Range(0, n).Where(i => fired[i] > 0).ToArray();

        var pairs = new Dictionary<(int, int), PairAcc>();
        var neurons = new List<NeuronError>();
        var ranked = new List<PairMetric>();
        double shareSum = 0; long shareCount = 0;
        HashSet<(int, int)>? screened = null;

        for (int l = 0; l < c.NLayers && !c.AttnOnly; l++)
        {
            int mid = 2 * l + 1;
            if (CcSite(mid) < 0) continue;
            var win = w[$"blocks.{l}.mlp.W_in"].Data; var bin = w[$"blocks.{l}.mlp.b_in"].Data;
            var ln2 = new Through(w, $"blocks.{l}.ln2.", c.Normalization);
            var midRows = Enumerable.Range(0, n).Select(i => Row(i, mid)).ToArray(); var midBias = Bias(mid);
            var U = midRows.Select(r => Times(ln2.In(r), win, d, m)).ToArray();
            // c = U₀ + U_b: b_dec^{mid} W_in + b_in without normalisation (In is the identity, U_b = b_in);
            // ((P b_dec) ⊙ w) W_in + b W_in + b_in through ln2.
            var u0 = Times(ln2.In(midBias), win, d, m);
            var ub = ln2.B is null ? bin : Times(ln2.B, win, d, m).Select((x, k) => x + bin[k]).ToArray();
            var cvec = u0.Select((x, k) => x + ub[k]).ToArray();

            // The cheap screen ‖(W_in(W_dec f̄_i + b)) ⊙ (W_in(W_dec f̄_j + b))‖ over occurring features.
            // (through ln2: f̄_i U_i + U₀, the token scale ι taken as 1 — a screen, not a measurement)
            var a = occurring.ToDictionary(i => i, i =>
            {
                if (ln2.Normed) return U[i].Select((x, k) => fbar[i] * x + u0[k]).ToArray();
                var r = Row(i, mid); var b = Bias(mid); for (int k = 0; k < d; k++) r[k] = fbar[i] * r[k] + b[k]; return Times(r, win, d, m);
            });
            var screen = new List<(int I, int J, double V)>();
            for (int x = 0; x < occurring.Length; x++)
                for (int y = x + 1; y < occurring.Length; y++)
                {
                    double s2 = 0; var ai = a[occurring[x]]; var aj = a[occurring[y]];
                    for (int k = 0; k < m; k++) s2 += ai[k] * aj[k] * ai[k] * aj[k];
                    screen.Add((occurring[x], occurring[y], Math.Sqrt(s2)));
                }
            if (o.ScreenTop > 0) screened = screen.OrderByDescending(p => p.V).Take(o.ScreenTop).Select(p => (p.I, p.J)).ToHashSet();
            foreach (var (i, j, v) in screen.OrderByDescending(p => p.V).Take(o.Top)) ranked.Add(new PairMetric("hadamard-screen", i, j, l, -1, v, 0));
            var screenOf = screen.ToDictionary(p => (p.I, p.J), p => p.V);

            var mass = new double[m]; var nonzero = new long[m];
            foreach (var t in tokens)
            {
                // The token's scale ι_t at ln2 (1 without normalisation) and bias point c_t = ι_t U₀ + U_b (= c without).
                double iota = 1;
                if (ln2.Normed)
                {
                    var am = (double[])midBias.Clone();
                    foreach (var (i, v) in t) for (int k = 0; k < d; k++) am[k] += v * midRows[i][k];
                    iota = ln2.Iota(am);
                }
                var ct = ln2.Normed ? u0.Select((x, k) => iota * x + ub[k]).ToArray() : cvec;
                var p = t.Select(f => U[f.Index].Select(u => iota * f.Value * u).ToArray()).ToArray();   // p[k][m]
                for (int k = 0; k < m; k++)
                {
                    double cb = ct[k];
                    bool g = cb > 0;
                    double total = 0, max = 0, sumAbs = 0;
                    for (int q = 0; q < p.Length; q++) { total += p[q][k]; sumAbs += Math.Abs(p[q][k]); max = Math.Max(max, Math.Abs(p[q][k])); }
                    if (sumAbs > 0) { shareSum += max / sumAbs; shareCount++; }
                    double e = E(c.Act, cb, g, total);
                    mass[k] += Math.Abs(e);
                    if (Math.Abs(e) > 1e-12) nonzero[k]++;
                    for (int x = 0; x < t.Length; x++)
                        for (int y = x + 1; y < t.Length; y++)
                        {
                            int i = Math.Min(t[x].Index, t[y].Index), j = Math.Max(t[x].Index, t[y].Index);
                            if (screened is not null && !screened.Contains((i, j))) continue;
                            double pi = p[x][k], pj = p[y][k];
                            double inter = Math.Abs(E(c.Act, cb, g, pi + pj) - E(c.Act, cb, g, pi) - E(c.Act, cb, g, pj));
                            double big = Math.Max(Math.Abs(pi), Math.Abs(pj)), small = Math.Min(Math.Abs(pi), Math.Abs(pj));
                            double seed = big > 0 ? small / big : 0;     // (f_j̃/f_ĩ)·|U_j̃m/U_ĩm| = |p_j̃m|/|p_ĩm|
                            if (!pairs.TryGetValue((i, j), out var acc)) pairs[(i, j)] = acc = new PairAcc();
                            acc.Measured += inter;
                            acc.SeedAll += seed;
                            if (k == 0) acc.Cooccur++;
                            if (seed > acc.BestSeed) { acc.BestSeed = seed; acc.BestLayer = l; acc.BestNeuron = k; }
                        }
                }
            }
            for (int k = 0; k < m; k++) neurons.Add(new NeuronError(l, k, mass[k], nonzero[k] / (double)Math.Max(1, T)));
            foreach (var ((i, j), acc) in pairs.OrderByDescending(p => p.Value.SeedAll).Take(o.Top))
                ranked.Add(new PairMetric("relu-seed", i, j, acc.BestLayer, acc.BestNeuron, acc.SeedAll / Math.Max(1, T), acc.Cooccur / (double)Math.Max(1, T)));
            foreach (var ((i, j), acc) in pairs.OrderByDescending(p => p.Value.Measured).Take(o.Top))
                ranked.Add(new PairMetric("relu-e-measured", i, j, acc.BestLayer, acc.BestNeuron, acc.Measured / Math.Max(1, T), acc.Cooccur / (double)Math.Max(1, T)));
            foreach (var ((i, j), acc) in pairs) acc.Screen += screenOf.GetValueOrDefault((i, j));
        }

        // Attention: B_ij = f̄_i f̄_j (W_dec[i] W_Q)·(W_dec[j] W_K) per head, departure from the row mean; key-set overlap;
        // and how often one query feature strictly dominates the score of the most-attended key.
        double domHits = 0, domTotal = 0;
        for (int l = 0; l < c.NLayers; l++)
        {
            int site = c.AttnOnly ? l : 2 * l;
            if (CcSite(site) < 0) continue;
            string at = $"blocks.{l}.attn.";
            var wq = w[at + "W_Q"].Data; var wk = w[at + "W_K"].Data;
            var ln1 = new Through(w, $"blocks.{l}.ln1.", c.Normalization);   // the rows as the attention reads them (token scale aside)
            for (int h = 0; h < c.NHeads; h++)
            {
                var Q = occurring.ToDictionary(i => i, i => Times(ln1.In(Row(i, site)), wq, d, c.DHead, h * d * c.DHead));
                var K = occurring.ToDictionary(i => i, i => Times(ln1.In(Row(i, site)), wk, d, c.DHead, h * d * c.DHead));
                double B(int i, int j) { double s = 0; for (int e = 0; e < c.DHead; e++) s += Q[i][e] * K[j][e]; return fbar[i] * fbar[j] * s; }
                var dep = new List<(int, int, double)>();
                var keySets = new Dictionary<int, HashSet<int>>();
                foreach (int i in occurring)
                {
                    var row = occurring.Select(j => (j, b: B(i, j))).ToArray();
                    double mean = row.Average(r => r.b);
                    dep.AddRange(row.Select(r => (i, r.j, Math.Abs(r.b - mean))));
                    keySets[i] = row.OrderByDescending(r => r.b).Take(5).Select(r => r.j).ToHashSet();
                }
                foreach (var (i, j, v) in dep.OrderByDescending(x => x.Item3).Take(o.Top))
                    ranked.Add(new PairMetric("attention-departure", i, j, l, h, v, Math.Min(fired[i], fired[j]) / (double)Math.Max(1, T)));
                var overlaps = new List<(int, int, double)>();
                for (int x = 0; x < occurring.Length; x++)
                    for (int y = x + 1; y < occurring.Length; y++)
                    {
                        var s1 = keySets[occurring[x]]; var s2 = keySets[occurring[y]];
                        overlaps.Add((occurring[x], occurring[y], s1.Intersect(s2).Count() / (double)s1.Union(s2).Count()));
                    }
                foreach (var (i, j, v) in overlaps.OrderByDescending(x => x.Item3).Take(o.Top))
                    ranked.Add(new PairMetric("attention-keyset-overlap", i, j, l, h, v, 0));
                // Dominance per (query token, head): the largest |f_ti Q_i·k| over the query's features against the rest.
                foreach (var seqF in features)
                    for (int t = 0; t < seqF.Length; t++)
                        for (int s = c.FirstKey(l, t); s <= t; s++)   // the keys the query reads (its window in a local layer)
                        {
                            if (seqF[t].Length == 0 || seqF[s].Length == 0) continue;
                            var key = new double[c.DHead];
                            foreach (var (j, v) in seqF[s]) for (int e = 0; e < c.DHead; e++) key[e] += v * K[j][e];
                            var contrib = seqF[t].Select(f => { double x = 0; for (int e = 0; e < c.DHead; e++) x += f.Value * Q[f.Index][e] * key[e]; return Math.Abs(x); }).ToArray();
                            double max = contrib.Max(), rest = contrib.Sum() - max;
                            domTotal++; if (max > rest) domHits++;
                        }
            }
        }

        // Probabilistic: covariance and KL(joint ‖ product of marginals) over binned activations.
        var dense = occurring.ToDictionary(i => i, _ => new double[T]);
        for (int t = 0; t < T; t++) foreach (var (i, v) in tokens[t]) dense[i][t] = v;
        var bins = occurring.ToDictionary(i => i, i => Binned(dense[i], o.Bins));
        var cov = new Dictionary<(int, int), double>(); var kl = new Dictionary<(int, int), double>();
        foreach (var (i, j) in pairs.Keys)
        {
            double mi = dense[i].Average(), mj = dense[j].Average(), s = 0;
            for (int t = 0; t < T; t++) s += (dense[i][t] - mi) * (dense[j][t] - mj);
            cov[(i, j)] = s / T;
            kl[(i, j)] = Kl(bins[i], bins[j], o.Bins);
        }
        foreach (var ((i, j), v) in cov.OrderByDescending(p => Math.Abs(p.Value)).Take(o.Top)) ranked.Add(new PairMetric("covariance", i, j, -1, -1, v, pairs[(i, j)].Cooccur / (double)T));
        foreach (var ((i, j), v) in kl.OrderByDescending(p => p.Value).Take(o.Top)) ranked.Add(new PairMetric("kl-joint-vs-product", i, j, -1, -1, v, pairs[(i, j)].Cooccur / (double)T));

        // Validation: each metric's Spearman correlation with the measured E contribution, and with the change in the
        // tables bound's b₀ when the pair's interaction is removed, over co-occurring pairs.
        var keys = pairs.Keys.ToList();
        var validation = new List<Validation>();
        BoundRemovalSummary? removal = null;
        if (keys.Count > 2 && !c.AttnOnly)
        {
            var metrics = new List<(string Name, double[] Values)>
            {
                ("relu-seed", keys.Select(k => pairs[k].SeedAll).ToArray()),
                ("hadamard-screen", keys.Select(k => pairs[k].Screen).ToArray()),
                ("|covariance|", keys.Select(k => Math.Abs(cov[k])).ToArray()),
                ("kl-joint-vs-product", keys.Select(k => kl[k]).ToArray()),
                ("co-occurrence frequency", keys.Select(k => (double)pairs[k].Cooccur).ToArray()),
            };
            var measured = keys.Select(k => pairs[k].Measured).ToArray();
            void Validate(string target, double[] y, int[]? subset = null)
            {
                var idx = subset ?? Enumerable.Range(0, keys.Count).ToArray();
                foreach (var (name, values) in metrics) validation.Add(new Validation(name, target, Spearman(idx.Select(x => values[x]).ToArray(), idx.Select(x => y[x]).ToArray()), idx.Length));
            }
            Validate("E-measured", measured);
            if (o.BoundRemoval)
            {
                var sens = BoundSensitivity.Run(w, cc, data, features, progress);
                var drop = keys.Select(k => sens.Pairs.TryGetValue(k, out var e) ? e.Uncapped : 0).ToArray();
                var dropCapped = keys.Select(k => sens.Pairs.TryGetValue(k, out var e) ? e.Capped : 0).ToArray();
                metrics.Add(("relu-e-measured", measured));
                Validate("b0-removal", drop);
                Validate("b0-removal-abs", drop.Select(Math.Abs).ToArray());
                // Among the pairs that move b₀ at all (in a one-layer model: those active together where a label is scored).
                var moving = Enumerable.Range(0, keys.Count).Where(x => drop[x] != 0).ToArray();
                if (moving.Length > 2) Validate("b0-removal-moving", drop, moving);
                removal = new BoundRemovalSummary(sens.B0, sens.UncappedB0, drop.Count(x => x > 0), drop.Count(x => x < 0), dropCapped.Count(x => x != 0),
                    drop.Length == 0 ? 0 : drop.Max(), dropCapped.Length == 0 ? 0 : dropCapped.Max());
                foreach (var (k, v) in keys.Zip(drop).OrderByDescending(p => p.Second).Take(o.Top))
                    ranked.Add(new PairMetric("b0-removal", k.Item1, k.Item2, pairs[k].BestLayer, pairs[k].BestNeuron, v, pairs[k].Cooccur / (double)Math.Max(1, T)));
            }
        }

        // Heat map of the measured interaction among the features with the most of it.
        var featureTotal = new Dictionary<int, double>();
        foreach (var ((i, j), acc) in pairs) { featureTotal[i] = featureTotal.GetValueOrDefault(i) + acc.Measured; featureTotal[j] = featureTotal.GetValueOrDefault(j) + acc.Measured; }
        var top = featureTotal.OrderByDescending(p => p.Value).Take(o.HeatmapSize).Select(p => p.Key).OrderBy(i => i).ToArray();
        var heat = new double[top.Length, top.Length];
        for (int x = 0; x < top.Length; x++)
            for (int y = 0; y < top.Length; y++)
                if (x != y && pairs.TryGetValue((Math.Min(top[x], top[y]), Math.Max(top[x], top[y])), out var acc)) heat[x, y] = acc.Measured / T;

        return new InteractionReport(T, pairs.Count, neurons.OrderByDescending(x => x.EMass).Take(o.Top).ToList(), ranked, validation,
            domTotal > 0 ? domHits / domTotal : double.NaN, shareCount > 0 ? shareSum / shareCount : double.NaN, top, heat, removal)
        { Measured = pairs.ToDictionary(p => p.Key, p => p.Value.Measured / Math.Max(1, T)) };
    }

    /// <summary>Bin 0 = inactive; active values split into bins−1 quantile bins.</summary>
    static int[] Binned(double[] x, int bins)
    {
        var active = x.Where(v => v != 0).OrderBy(v => v).ToArray();
        var edges = Enumerable.Range(1, bins - 2).Select(b => active.Length == 0 ? 0 : active[Math.Min(active.Length - 1, b * active.Length / (bins - 1))]).ToArray();
        return x.Select(v => v == 0 ? 0 : 1 + edges.Count(e => v >= e)).ToArray();
    }

    /// <summary>KL divergence of the joint histogram from the product of its marginals (0 exactly for independence in the sample).</summary>
    public static double Kl(int[] a, int[] b, int bins)
    {
        int T = a.Length;
        var joint = new double[bins, bins]; var pa = new double[bins]; var pb = new double[bins];
        for (int t = 0; t < T; t++) { joint[a[t], b[t]]++; pa[a[t]]++; pb[b[t]]++; }
        double kl = 0;
        for (int x = 0; x < bins; x++)
            for (int y = 0; y < bins; y++)
                if (joint[x, y] > 0) kl += joint[x, y] / T * Math.Log(joint[x, y] * T / (pa[x] * pb[y]));
        return Math.Max(0, kl);
    }

    public static double Spearman(double[] x, double[] y)
    {
        double[] Rank(double[] v)
        {
            var order = Enumerable.Range(0, v.Length).OrderBy(i => v[i]).ToArray();
            var r = new double[v.Length];
            for (int k = 0; k < order.Length;)
            {
                int e = k;
                while (e + 1 < order.Length && v[order[e + 1]] == v[order[k]]) e++;
                for (int q = k; q <= e; q++) r[order[q]] = (k + e) / 2.0;
                k = e + 1;
            }
            return r;
        }
        var rx = Rank(x); var ry = Rank(y);
        double mx = rx.Average(), my = ry.Average(), sxy = 0, sxx = 0, syy = 0;
        for (int i = 0; i < x.Length; i++) { sxy += (rx[i] - mx) * (ry[i] - my); sxx += (rx[i] - mx) * (rx[i] - mx); syy += (ry[i] - my) * (ry[i] - my); }
        return sxx == 0 || syy == 0 ? 0 : sxy / Math.Sqrt(sxx * syy);
    }
}
