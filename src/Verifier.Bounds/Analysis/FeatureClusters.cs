using Verifier.Core;

namespace Verifier.Bounds.Analysis;

public sealed record FeatureCluster(int Exemplar, int[] Features, int[] TopTokens, int[] TopPositions);

/// <summary>Clustering features by interaction (issue 6.5): affinity propagation (Frey and Dueck 2007) on the
/// symmetrised measured interaction matrix, compared with the same clustering of the features' activation cosine
/// similarity by the adjusted Rand index. Ties are broken by a seeded perturbation of 1e-12 of the similarity scale.</summary>
public static class FeatureClusters
{
    public sealed record Result(IReadOnlyList<FeatureCluster> ByInteraction, IReadOnlyList<FeatureCluster> ByActivation, double AdjustedRand);

    public static Result Run(ModelWeights w, CrosscoderWeights cc, TokenDataset data, InteractionReport report, ulong seed)
    {
        w.Config.RequireBasic("cluster-features");
        var enc = new PlainCrosscoder(cc, w.Config.SiteNames());
        var seqs = data.Sequences.Select(s => (s, f: enc.Encode(w, s.Tokens))).ToArray();
        var features = report.Measured.Keys.SelectMany(k => new[] { k.I, k.J }).Distinct().OrderBy(i => i).ToArray();
        int N = features.Length;
        if (N < 2) return new Result([], [], double.NaN);
        var index = features.Select((f, k) => (f, k)).ToDictionary(x => x.f, x => x.k);
        var inter = new double[N, N];
        foreach (var ((i, j), v) in report.Measured) { inter[index[i], index[j]] = v; inter[index[j], index[i]] = v; }

        // Activation vectors over tokens, for cosine similarity.
        long T = seqs.Sum(x => (long)x.f.Length);
        var act = new double[N][];
        for (int k = 0; k < N; k++) act[k] = new double[T];
        long t0 = 0;
        foreach (var (_, f) in seqs) { foreach (var ft in f) { foreach (var (i, v) in ft) if (index.TryGetValue(i, out int k)) act[k][t0] = v; t0++; } }
        var cos = new double[N, N];
        var norm = act.Select(a => Math.Sqrt(a.Sum(x => x * x))).ToArray();
        for (int a = 0; a < N; a++)
            for (int b = 0; b < N; b++)
            {
                double s = 0; for (long t = 0; t < T; t++) s += act[a][t] * act[b][t];
                cos[a, b] = norm[a] > 0 && norm[b] > 0 ? s / (norm[a] * norm[b]) : 0;
            }
        var byInter = AffinityPropagation(inter, seed);
        var byAct = AffinityPropagation(cos, seed);
        FeatureCluster[] Describe(int[] labels) => labels.Distinct().Select(ex =>
        {
            var members = Enumerable.Range(0, N).Where(k => labels[k] == ex).Select(k => features[k]).ToHashSet();
            var tokenScore = new Dictionary<int, double>(); var posScore = new Dictionary<int, double>();
            foreach (var (s, f) in seqs)
                for (int t = 0; t < f.Length; t++)
                {
                    double v = f[t].Where(x => members.Contains(x.Index)).Sum(x => x.Value);
                    tokenScore[s.Tokens[t]] = tokenScore.GetValueOrDefault(s.Tokens[t]) + v;
                    posScore[t] = posScore.GetValueOrDefault(t) + v;
                }
            return new FeatureCluster(features[ex], members.OrderBy(i => i).ToArray(),
                tokenScore.OrderByDescending(p => p.Value).Take(5).Select(p => p.Key).ToArray(), posScore.OrderByDescending(p => p.Value).Take(3).Select(p => p.Key).ToArray());
        }).OrderByDescending(c => c.Features.Length).ToArray();
        return new Result(Describe(byInter), Describe(byAct), AdjustedRand(byInter, byAct));
    }

    /// <summary>Labels (the exemplar's index) for each point; preference = the median similarity.</summary>
    public static int[] AffinityPropagation(double[,] sim, ulong seed, int iterations = 300, double damping = 0.7)
    {
        int N = sim.GetLength(0);
        var S = (double[,])sim.Clone();
        var off = new List<double>();
        for (int i = 0; i < N; i++) for (int k = 0; k < N; k++) if (i != k) off.Add(S[i, k]);
        off.Sort();
        double pref = off[off.Count / 2], scale = Math.Max(1e-300, off[^1] - off[0]);
        var rng = Rng.Derive(seed, "affinity-propagation");
        for (int i = 0; i < N; i++) { S[i, i] = pref; for (int k = 0; k < N; k++) S[i, k] += 1e-12 * scale * rng.NextDouble(); }
        var R = new double[N, N]; var A = new double[N, N];
        for (int it = 0; it < iterations; it++)
        {
            for (int i = 0; i < N; i++)
            {
                double first = double.NegativeInfinity, second = double.NegativeInfinity; int arg = -1;
                for (int k = 0; k < N; k++) { double v = A[i, k] + S[i, k]; if (v > first) { second = first; first = v; arg = k; } else if (v > second) second = v; }
                for (int k = 0; k < N; k++) R[i, k] = damping * R[i, k] + (1 - damping) * (S[i, k] - (k == arg ? second : first));
            }
            for (int k = 0; k < N; k++)
            {
                double sum = 0;
                for (int i = 0; i < N; i++) if (i != k) sum += Math.Max(0, R[i, k]);
                for (int i = 0; i < N; i++)
                {
                    double v = i == k ? sum : Math.Min(0, R[k, k] + sum - Math.Max(0, R[i, k]));
                    A[i, k] = damping * A[i, k] + (1 - damping) * v;
                }
            }
        }
        var exemplars = Enumerable.Range(0, N).Where(k => R[k, k] + A[k, k] > 0).ToArray();
        if (exemplars.Length == 0) exemplars = [Enumerable.Range(0, N).MaxBy(k => R[k, k] + A[k, k])];
        return Enumerable.Range(0, N).Select(i => exemplars.Contains(i) ? i : exemplars.MaxBy(e => S[i, e])).ToArray();
    }

    /// <summary>Adjusted Rand index of two labellings (1: identical partitions; about 0: chance agreement).</summary>
    public static double AdjustedRand(int[] a, int[] b)
    {
        int n = a.Length;
        var table = new Dictionary<(int, int), long>(); var ra = new Dictionary<int, long>(); var rb = new Dictionary<int, long>();
        for (int i = 0; i < n; i++) { table[(a[i], b[i])] = table.GetValueOrDefault((a[i], b[i])) + 1; ra[a[i]] = ra.GetValueOrDefault(a[i]) + 1; rb[b[i]] = rb.GetValueOrDefault(b[i]) + 1; }
        static double C2(long x) => x * (x - 1) / 2.0;
        double index = table.Values.Sum(C2), sa = ra.Values.Sum(C2), sb = rb.Values.Sum(C2), total = C2(n);
        double expected = sa * sb / total, max = (sa + sb) / 2;
        return max == expected ? 1 : (index - expected) / (max - expected);
    }
}
