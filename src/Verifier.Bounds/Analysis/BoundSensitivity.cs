using Verifier.Core;

namespace Verifier.Bounds.Analysis;

/// <summary>How much one feature pair's interaction loosens the crosscoder-tables bound.</summary>
/// <param name="Uncapped">b₀ − b₀ without the pair, both before IP's per-position cap (the crosscoder's own bound).</param>
/// <param name="Capped">The same for the certified b₀ (capped position by position by the trivial bound).</param>
/// <param name="Sequences">Sequences in which the pair is active at one token together.</param>
public sealed record PairBoundEffect(int I, int J, double Uncapped, double Capped, long Sequences);

public sealed record SensitivityReport(double B0, double UncappedB0, long Positions, IReadOnlyDictionary<(int I, int J), PairBoundEffect> Pairs);

/// <summary>The change in b₀ when one pair's interaction is removed from the crosscoder-tables strategy (issue 6.2).
/// At MLP layer l, token t and neuron m where features i and j are both active (S the token's active set), the
/// strategy's linearisation error E_m (T2) loses the pair's second-order part in context, the mixed difference
/// I_ij,m = E(S) − E(S∖i) − E(S∖j) + E(S∖{i,j}) (E(S) = ReLU(c + Σ_S p) − ReLU(c) − g Σ_S p, p_im = f_i U_im; for
/// S = {i, j} it is E({i,j}) − E({i}) − E({j})): Σ_m |E_m − I_ij,m| ‖W_out[m]‖ replaces Σ_m |E_m| ‖W_out[m]‖, and the ε recursion and
/// L1 run again (<see cref="TablesSequence.Propagate"/>). The result is a counterfactual — what b₀ would be if the pair
/// combined linearly — never a proof. Only sequences where the pair co-occurs are re-run.</summary>
public static class BoundSensitivity
{
    /// <summary>Why the analysis cannot run on this model and crosscoder, or null when it can.</summary>
    public static string? Unavailable(ModelConfig c, CrosscoderConfig cc)
    {
        if (c.AttnOnly) return "the bound's ReLU interactions need MLP layers; this model is attention-only";
        var names = c.SiteNames();
        return names.All(cc.Sites.Contains) ? null
            : $"removing a pair from the crosscoder-tables bound needs a crosscoder over every residual site ({string.Join(", ", names)}); this one has {string.Join(", ", cc.Sites)}";
    }

    /// <param name="features">The crosscoder's features per sequence and position, when the caller has them already.</param>
    public static SensitivityReport Run(ModelWeights w, CrosscoderWeights cc, TokenDataset data, (int Index, double Value)[][][]? features = null,
        IProgress<(int Done, int Total)>? progress = null, CancellationToken ct = default)
    {
        w.Config.RequireTablesCover("the bound-removal validation of interactions");
        var c = w.Config; var names = c.SiteNames();
        if (Unavailable(c, cc.Config) is string why) throw new UsageException(why);
        int[] ccSite = names.Select(s => cc.Config.Sites.ToList().IndexOf(s)).ToArray();
        var model = new IntervalModel(w);
        var norms = Norms.Compute(w);
        var tab = Tables.Build(w, cc, ccSite);
        var trivial = TrivialStrategy.Table(w, ct);
        var encoder = new PlainCrosscoder(cc, names);
        // Float64 midpoints for the pair terms (a counterfactual, not a claim).
        var U = tab.Mlp.Select(mt => mt!.U.Select(r => r.Select(x => 0.5 * (x.Lo + x.Hi)).ToArray()).ToArray()).ToArray();
        var C = tab.Mlp.Select(mt => mt!.C.Select(x => 0.5 * (x.Lo + x.Hi)).ToArray()).ToArray();
        // T3: the token's scale ι_t at ln2 puts its bias point at c + (ι_t − 1) U₀ and scales every p by ι_t (1 and c without).
        var U0 = tab.Mlp.Select(mt => mt!.U0?.Select(x => 0.5 * (x.Lo + x.Hi)).ToArray()).ToArray();
        double E(double cb, bool g, double x) => InteractionAnalysis.E(c.Act, cb, g, x);
        double Iota(int l, (int Index, double Value)[] ft) => tab.Mlp[l]!.Norm is { } nt ? Mid(nt.Scale(ft).Iota) : 1;
        static double Mid(Iv x) => 0.5 * (x.Lo + x.Hi);

        var acc = new Dictionary<(int, int), (double Uncapped, double Capped, long Seqs)>();
        double sum = 0, uncappedSum = 0;
        for (int q = 0; q < data.Count; q++)
        {
            ct.ThrowIfCancellationRequested();
            var seq = data.Sequences[q];
            var f = features?[q] ?? encoder.Encode(w, seq.Tokens);
            var ts = TablesSequence.Prepare(c, model, tab, encoder, ccSite[0], f, seq);
            var baseline = ts.Propagate(c, norms, trivial);
            // Σ_S p_km per layer, position and neuron (the token's whole shift from c), once per sequence.
            var iota = Enumerable.Range(0, c.NLayers).Select(l => f.Select(ft => Iota(l, ft)).ToArray()).ToArray();
            var shift = Enumerable.Range(0, c.NLayers).Select(l => f.Select((ft, t) =>
            {
                var sm = new double[c.DMlp];
                foreach (var (k, v) in ft) for (int m = 0; m < c.DMlp; m++) sm[m] += iota[l][t] * v * U[l][k][m];
                return sm;
            }).ToArray()).ToArray();
            sum = Up.Add(sum, baseline.LossSum); uncappedSum += baseline.UncappedLossSum;
            var pairs = new SortedSet<(int, int)>();
            foreach (var ft in f)
                for (int a = 0; a < ft.Length; a++)
                    for (int b = a + 1; b < ft.Length; b++) pairs.Add((Math.Min(ft[a].Index, ft[b].Index), Math.Max(ft[a].Index, ft[b].Index)));
            foreach (var (i, j) in pairs)
            {
                var outs = new Dictionary<(int, int), double>();
                for (int l = 0; l < c.NLayers; l++)
                {
                    var mt = tab.Mlp[l]!;
                    for (int t = 0; t < f.Length; t++)
                    {
                        double fi = 0, fj = 0; bool hi = false, hj = false;
                        foreach (var (k, v) in f[t]) { if (k == i) { fi = v; hi = true; } else if (k == j) { fj = v; hj = true; } }
                        if (!hi || !hj) continue;
                        var e = (Iv[])ts.E[l][t].Clone();
                        for (int m = 0; m < e.Length; m++)
                        {
                            double io = iota[l][t], pi = io * fi * U[l][i][m], pj = io * fj * U[l][j][m], all = shift[l][t][m];
                            double cb = U0[l] is { } u0 ? C[l][m] + (io - 1) * u0[m] : C[l][m];
                            // The pair's mixed difference in context: E(S) − E(S∖i) − E(S∖j) + E(S∖{i,j}).
                            double inter = E(cb, mt.G[m], all) - E(cb, mt.G[m], all - pi) - E(cb, mt.G[m], all - pj) + E(cb, mt.G[m], all - pi - pj);
                            if (inter != 0) e[m] = e[m] - Iv.Point(inter);
                        }
                        outs[(l, t)] = TablesSequence.ErrorOut(e, mt.WoutRowNorm);
                    }
                }
                var without = ts.Propagate(c, norms, trivial, (l, t) => outs.TryGetValue((l, t), out var v) ? v : null);
                var prev = acc.GetValueOrDefault((i, j));
                acc[(i, j)] = (prev.Uncapped + (baseline.UncappedLossSum - without.UncappedLossSum), prev.Capped + (baseline.LossSum - without.LossSum), prev.Seqs + 1);
            }
            if (q % 16 == 0 || q == data.Count - 1) progress?.Report((q + 1, data.Count));
        }
        long P = data.LabelledPositions;
        return new SensitivityReport(Claim.Slack(Up.Div(sum, P)), uncappedSum / P, P,
            acc.ToDictionary(p => p.Key, p => new PairBoundEffect(p.Key.Item1, p.Key.Item2, p.Value.Uncapped / P, p.Value.Capped / P, p.Value.Seqs)));
    }
}
