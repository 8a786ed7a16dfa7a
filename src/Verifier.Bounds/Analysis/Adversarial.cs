using Verifier.Core;

namespace Verifier.Bounds.Analysis;

public sealed record AdversarialPair(int I, int J, double Screen, double DataFrequency, int BothFound, int AloneFound,
    double LossBoth, double LossAlone, double Increase, int[][] Examples);

/// <summary>Adversarial inputs from interactions (issue 6.7): take feature pairs whose MLP inputs interact strongly by
/// the screen ‖(W_in(W_dec f̄_i + b)) ⊙ (W_in(W_dec f̄_j + b))‖ but rarely co-occur in the data; search token sequences
/// (seeded hill climbing on min(pre_i, pre_j) at the best position) that activate both at one position; compare their
/// loss with task samples where exactly one of the two is active (labels from the task).</summary>
public static class Adversarial
{
    public static IReadOnlyList<AdversarialPair> Run(ModelWeights w, CrosscoderWeights cc, ITask task, TokenDataset data,
        int pairs, int budget, ulong seed, CancellationToken ct = default)
    {
        w.Config.RequireBasic("adversarial");
        var c = w.Config; var sites = c.SiteNames();
        if (task.DVocab != c.DVocab || task.NCtx > c.NCtx) throw new UsageException($"the task ({task.Describe()}) does not fit the model's vocabulary and context");
        if (task.Label(Enumerable.Repeat(0, task.NCtx).ToArray()) is null && task is not MaxOfKTask)
            throw new UsageException($"the task '{task.Name}' cannot label inputs built by search");
        if (c.AttnOnly) throw new UsageException("adversarial search by ReLU interaction needs MLP layers");
        var enc = new PlainCrosscoder(cc, sites);
        int n = cc.Config.Width, d = c.DModel, m = c.DMlp, S = cc.Config.Sites.Count;

        // Data statistics: firing and co-occurrence (same token position).
        var fired = new long[n]; var fsum = new double[n]; long tokens = 0;
        var co = new Dictionary<(int, int), long>();
        foreach (var s in data.Sequences)
            foreach (var ft in enc.Encode(w, s.Tokens))
            {
                tokens++;
                foreach (var (i, v) in ft) { fired[i]++; fsum[i] += v; }
                for (int x = 0; x < ft.Length; x++) for (int y = x + 1; y < ft.Length; y++) { var key = (Math.Min(ft[x].Index, ft[y].Index), Math.Max(ft[x].Index, ft[y].Index)); co[key] = co.GetValueOrDefault(key) + 1; }
            }
        // Screen at layer 0's MLP input.
        int cs = cc.Config.Sites.ToList().IndexOf(sites[1]);
        if (cs < 0) throw new UsageException($"the crosscoder needs {sites[1]} (the first MLP's input)");
        var win = w["blocks.0.mlp.W_in"].Data; var dec = cc["W_dec"].Data; var bdec = cc["b_dec"].Data;
        var candidates = Enumerable.Range(0, n).Where(i => fired[i] >= Math.Max(5, tokens / 200)).ToArray();
        var a = candidates.ToDictionary(i => i, i =>
        {
            double fb = fsum[i] / fired[i];
            var r = new double[m];
            for (int k = 0; k < d; k++) { double x = fb * dec[(i * S + cs) * d + k] + bdec[cs * d + k]; for (int j = 0; j < m; j++) r[j] += x * win[k * m + j]; }
            return r;
        });
        var ranked = new List<(int I, int J, double Screen, double Freq)>();
        for (int x = 0; x < candidates.Length; x++)
            for (int y = x + 1; y < candidates.Length; y++)
            {
                int i = candidates[x], j = candidates[y];
                double freq = co.GetValueOrDefault((i, j)) / (double)tokens;
                if (freq > 0.001) continue;                                                   // rare: at most 0.1% of tokens
                double s2 = 0; for (int k = 0; k < m; k++) { double p = a[i][k] * a[j][k]; s2 += p * p; }
                ranked.Add((i, j, Math.Sqrt(s2), freq));
            }
        var modelSiteOf = cc.Config.Sites.Select(name => sites.ToList().IndexOf(name)).ToArray();   // crosscoder site → model site
        var encW = cc["W_enc"].Data; var benc = cc["b_enc"].Data;
        var rng = Rng.Derive(seed, "adversarial");
        var results = new List<AdversarialPair>();
        foreach (var (i, j, screen, freq) in ranked.OrderByDescending(p => p.Screen).Take(pairs))
        {
            ct.ThrowIfCancellationRequested();
            var both = new List<Sequence>(); var alone = new List<Sequence>();
            double Objective(int[] toks)
            {
                var sitesAct = ReferenceForward.Run(w, toks).Sites;
                double best = double.NegativeInfinity;
                for (int t = 0; t < toks.Length; t++)
                {
                    double pi = benc[i], pj = benc[j];
                    for (int s = 0; s < S; s++)
                    {
                        var h = sitesAct[modelSiteOf[s]];
                        for (int k = 0; k < d; k++) { pi += h[t, k] * encW[(s * d + k) * n + i]; pj += h[t, k] * encW[(s * d + k) * n + j]; }
                    }
                    best = Math.Max(best, Math.Min(pi, pj));
                }
                return best;
            }
            bool Both(int[] toks) => enc.Encode(w, toks).Any(ft => ft.Any(f => f.Index == i) && ft.Any(f => f.Index == j));
            bool Alone(int[] toks) { var e = enc.Encode(w, toks); return !e.Any(ft => ft.Any(f => f.Index == i) && ft.Any(f => f.Index == j)) && e.Any(ft => ft.Any(f => f.Index == i || f.Index == j)); }
            for (int tries = 0; tries < budget && (both.Count < 20 || alone.Count < 20); tries++)
            {
                var s = task.Sample(rng);
                if (alone.Count < 20 && Alone(s.Tokens)) alone.Add(s);
                if (both.Count >= 20) continue;
                // Hill climb from this sample for a few steps.
                var toks = (int[])s.Tokens.Clone();
                double obj = Objective(toks);
                for (int step = 0; step < 12 && obj <= 0; step++)
                {
                    var cand = (int[])toks.Clone();
                    cand[rng.NextInt(cand.Length)] = rng.NextInt(task.DVocab);
                    double o2 = Objective(cand);
                    if (o2 > obj) { toks = cand; obj = o2; }
                }
                if (obj > 0 && Both(toks) && task.Label(toks) is { } labels) both.Add(new Sequence(toks, labels));
            }
            double Loss(List<Sequence> seqs) => seqs.Count == 0 ? double.NaN : ReferenceForward.Evaluate(w, new TokenDataset(seqs)).Loss;
            double lb = Loss(both), la = Loss(alone);
            results.Add(new AdversarialPair(i, j, screen, freq, both.Count, alone.Count, lb, la, lb - la, both.Take(3).Select(x => x.Tokens).ToArray()));
        }
        return results;
    }
}
