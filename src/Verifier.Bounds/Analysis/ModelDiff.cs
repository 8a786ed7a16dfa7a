using Verifier.Core;

namespace Verifier.Bounds.Analysis;

/// <param name="ScoreA">Mean interaction score of model A over the sequences containing the token (likewise B).</param>
/// <param name="Difference">Mean of (score_B − score_A) over sequences with the token minus the mean over those without.</param>
/// <param name="T">Welch's t of that difference: the ranking key (|T|, largest first).</param>
public sealed record TokenDiff(int Token, double ScoreA, double ScoreB, double Difference, double T, long Occurrences);
public sealed record NeuronDiff(int Layer, int Neuron, double MassA, double MassB, double Difference);

/// <summary>Model diffing through one crosscoder over both models' sites (issue 6.6). Per token position and model X,
/// the interaction score is Σ_l Σ_m ‖W_out^X[m]‖ · (Σ_i |p^X_im| − max_i |p^X_im|) with p^X_im = f_i (W_dec^{X,mid}[i] W_in^X)_m.
/// A sequence's score is the sum over its positions (attention carries a token's influence to later positions, so
/// its own position is not where it shows). Two independently trained or fine-tuned models differ everywhere, so
/// tokens are ranked contrastively: Difference = mean over sequences containing the token of (score_B − score_A)
/// minus the same mean over sequences without it, and the rank is by Welch's t of that difference — how consistently
/// the token's presence changes one model's interactions against the other's, not only by how much on average (a
/// token that decides a task, such as the largest values in max-of-k, shifts both models' scores a lot but unevenly).</summary>
public static class ModelDiff
{
    /// <param name="cc">A crosscoder whose sites are model A's sites (in ModelConfig.SiteNames order) then model B's.</param>
    public static (IReadOnlyList<TokenDiff> Tokens, IReadOnlyList<NeuronDiff> Neurons) Run(ModelWeights a, ModelWeights b, CrosscoderWeights cc, TokenDataset data)
    {
        a.Config.RequireBasic("diff-models");
        var c = a.Config; var names = c.SiteNames(); int S1 = names.Count, S = 2 * S1, d = c.DModel, n = cc.Config.Width, m = c.DMlp;
        if (c.AttnOnly) throw new UsageException("model diffing by ReLU interaction needs MLP layers");
        if (cc.Config.Sites.Count != S) throw new UsageException($"the crosscoder must cover both models' {S1} sites ({S} in all)");
        var enc = cc["W_enc"].Data; var benc = cc["b_enc"].Data; var dec = cc["W_dec"].Data;
        double[][] U(ModelWeights w, int offset, int l)
        {
            var win = w[$"blocks.{l}.mlp.W_in"].Data; int site = offset + 2 * l + 1;
            return Enumerable.Range(0, n).Select(i =>
            {
                var u = new double[m];
                for (int k = 0; k < d; k++) { double x = dec[(i * S + site) * d + k]; for (int j = 0; j < m; j++) u[j] += x * win[k * m + j]; }
                return u;
            }).ToArray();
        }
        double[] OutNorm(ModelWeights w, int l) => Enumerable.Range(0, m).Select(j =>
            Math.Sqrt(Enumerable.Range(0, d).Sum(k => w[$"blocks.{l}.mlp.W_out"].Data[j * d + k] * w[$"blocks.{l}.mlp.W_out"].Data[j * d + k]))).ToArray();
        var uA = Enumerable.Range(0, c.NLayers).Select(l => U(a, 0, l)).ToArray(); var uB = Enumerable.Range(0, c.NLayers).Select(l => U(b, S1, l)).ToArray();
        var oA = Enumerable.Range(0, c.NLayers).Select(l => OutNorm(a, l)).ToArray(); var oB = Enumerable.Range(0, c.NLayers).Select(l => OutNorm(b, l)).ToArray();
        var perSeq = new List<(int[] Tokens, double A, double B)>();
        var massA = new double[c.NLayers, m]; var massB = new double[c.NLayers, m];
        foreach (var seq in data.Sequences)
        {
            var sa = ReferenceForward.Run(a, seq.Tokens).Sites; var sb = ReferenceForward.Run(b, seq.Tokens).Sites;
            double seqA = 0, seqB = 0;
            for (int t = 0; t < seq.Tokens.Length; t++)
            {
                var pre = (double[])benc.Clone();
                for (int s = 0; s < S; s++)
                {
                    var h = s < S1 ? sa[s] : sb[s - S1];
                    for (int k = 0; k < d; k++) { double hv = h[t, k]; int row = (s * d + k) * n; for (int j = 0; j < n; j++) pre[j] += hv * enc[row + j]; }
                }
                IEnumerable<int> active = Enumerable.Range(0, n).Where(j => pre[j] > 0).OrderByDescending(j => pre[j]);
                if (cc.Config.K is int kk) active = active.Take(kk);
                var f = active.Select(j => (j, pre[j])).ToArray();
                double Score(double[][][] u, double[][] o, double[,] mass)
                {
                    double total = 0;
                    for (int l = 0; l < c.NLayers; l++)
                        for (int j = 0; j < m; j++)
                        {
                            double sum = 0, max = 0;
                            foreach (var (i, v) in f) { double p = Math.Abs(v * u[l][i][j]); sum += p; max = Math.Max(max, p); }
                            double term = o[l][j] * (sum - max);
                            mass[l, j] += term; total += term;
                        }
                    return total;
                }
                seqA += Score(uA, oA, massA); seqB += Score(uB, oB, massB);
            }
            perSeq.Add((seq.Tokens, seqA, seqB));
        }
        var tokens = perSeq.SelectMany(p => p.Tokens).Distinct().Select(x => Contrast(x, perSeq))
            .OrderByDescending(t => double.IsNaN(t.T) ? -1 : Math.Abs(t.T)).ThenByDescending(t => Math.Abs(t.Difference)).ToList();
        var neurons = new List<NeuronDiff>();
        for (int l = 0; l < c.NLayers; l++) for (int j = 0; j < m; j++) neurons.Add(new NeuronDiff(l, j, massA[l, j], massB[l, j], massB[l, j] - massA[l, j]));
        return (tokens, neurons.OrderByDescending(x => Math.Abs(x.Difference)).ToList());
    }

    /// <summary>The contrast of (score_B − score_A) between sequences with token x and without it, and Welch's t
    /// (NaN when either group has fewer than two sequences).</summary>
    public static TokenDiff Contrast(int x, IReadOnlyList<(int[] Tokens, double A, double B)> perSeq)
    {
        var with = perSeq.Where(p => p.Tokens.Contains(x)).ToList();
        var without = perSeq.Where(p => !p.Tokens.Contains(x)).Select(p => p.B - p.A).ToArray();
        var d1 = with.Select(p => p.B - p.A).ToArray();
        double m1 = d1.Average(), m0 = without.Length > 0 ? without.Average() : 0;
        double t = double.NaN;
        if (d1.Length > 1 && without.Length > 1)
        {
            double v1 = d1.Sum(z => (z - m1) * (z - m1)) / (d1.Length - 1), v0 = without.Sum(z => (z - m0) * (z - m0)) / (without.Length - 1);
            double se = Math.Sqrt(v1 / d1.Length + v0 / without.Length);
            t = se > 0 ? (m1 - m0) / se : (m1 == m0 ? 0 : double.PositiveInfinity * Math.Sign(m1 - m0));
        }
        return new TokenDiff(x, with.Average(p => p.A), with.Average(p => p.B), m1 - m0, t, with.Count);
    }
}
