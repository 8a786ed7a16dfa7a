using Verifier.Core;

namespace Verifier.Bounds.Analysis;

public sealed record SuppressionResult(string Scheme, double Loss, double Fidelity);

/// <summary>Interaction suppression (issue 6.4): each MLP neuron's pre-activation is rebuilt from the crosscoder's
/// features of that token, p_im = f_i (W_dec^{mid}[i] W_in)_m, plus the bias part c_m, keeping only some of them,
/// and the rest of the model runs on it. Fidelity Φ = 1 − (L_ablated − L_model)/(L_zero − L_model), where L_zero has
/// every neuron off (pre-activation −∞).</summary>
public static class Suppression
{
    public static readonly IReadOnlyList<string> Schemes = ["full-reconstruction", "keep-dominant", "drop-dominant", "drop-second", "drop-random"];

    public static (double Model, double Zero, IReadOnlyList<SuppressionResult> Results) Run(ModelWeights w, CrosscoderWeights cc, TokenDataset data, ulong seed)
    {
        w.Config.RequireBasic("suppress");
        var c = w.Config; var sites = c.SiteNames();
        if (c.AttnOnly) throw new UsageException("suppression rebuilds MLP pre-activations: the model has no MLP");
        int n = cc.Config.Width, d = c.DModel, m = c.DMlp, S = cc.Config.Sites.Count;
        var enc = new PlainCrosscoder(cc, sites);
        var features = data.Sequences.Select(s => enc.Encode(w, s.Tokens)).ToArray();
        var dec = cc["W_dec"].Data; var bdec = cc["b_dec"].Data;
        var U = new double[c.NLayers][][]; var C = new double[c.NLayers][];
        for (int l = 0; l < c.NLayers; l++)
        {
            int cs = cc.Config.Sites.ToList().IndexOf(sites[2 * l + 1]);
            if (cs < 0) throw new UsageException($"suppression needs the crosscoder to have {sites[2 * l + 1]} (the MLP's input)");
            var win = w[$"blocks.{l}.mlp.W_in"].Data; var bin = w[$"blocks.{l}.mlp.b_in"].Data;
            U[l] = new double[n][];
            for (int i = 0; i < n; i++)
            {
                U[l][i] = new double[m];
                for (int k = 0; k < d; k++) { double x = dec[(i * S + cs) * d + k]; for (int j = 0; j < m; j++) U[l][i][j] += x * win[k * m + j]; }
            }
            C[l] = (double[])bin.Clone();
            for (int k = 0; k < d; k++) { double x = bdec[cs * d + k]; for (int j = 0; j < m; j++) C[l][j] += x * win[k * m + j]; }
        }
        double model = ReferenceForward.Evaluate(w, data).Loss;
        double zero = ReferenceForward.Evaluate(w, data, (_, _, _, pre) => pre.Select(_ => double.NegativeInfinity).ToArray()).Loss;
        var results = new List<SuppressionResult>();
        foreach (var scheme in Schemes)
        {
            var rng = Rng.Derive(seed, "suppression/" + scheme);
            double loss = ReferenceForward.Evaluate(w, data, (q, l, t, _) =>
            {
                var f = features[q][t];
                var pre = (double[])C[l].Clone();
                int random = f.Length > 0 ? rng.NextInt(f.Length) : 0;   // drop-random: one feature of the token, at every neuron
                for (int j = 0; j < m; j++)
                {
                    var p = f.Select(x => x.Value * U[l][x.Index][j]).ToArray();
                    if (p.Length == 0) continue;
                    var order = Enumerable.Range(0, p.Length).OrderByDescending(k => Math.Abs(p[k])).ToArray();
                    double sum = p.Sum();
                    pre[j] += scheme switch
                    {
                        "full-reconstruction" => sum,
                        "keep-dominant" => p[order[0]],
                        "drop-dominant" => sum - p[order[0]],
                        "drop-second" => p.Length > 1 ? sum - p[order[1]] : sum,
                        _ => sum - p[random],
                    };
                }
                return pre;
            }).Loss;
            results.Add(new SuppressionResult(scheme, loss, 1 - (loss - model) / (zero - model)));
        }
        return (model, zero, results);
    }
}
