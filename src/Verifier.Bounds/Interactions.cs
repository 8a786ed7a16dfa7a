using System.Text.Json.Nodes;
using Verifier.Core;

namespace Verifier.Bounds;

/// <summary>The interaction terms of the tables strategy (BOUNDS.md §3). MLP (kinds "relu-neuron", "relu-pair" for every
/// act_fn: the linearisation error E of T2/T3, which for a smooth activation also holds its curvature): per layer and neuron, the mass of
/// the linearisation error |E| over the data and how often it is provably non-zero; and at tokens where it is,
/// for each pair of active features, the seed's strength (f_j̃/f_ĩ)·|U_j̃m/U_ĩm| (ĩ the feature with the larger
/// |f_i U_im|), averaged over the data. Attention: per head, the feature pairs whose B_ij = Q_i·K_j departs most
/// from the average of row i over the features that occur.</summary>
public sealed class InteractionCollector(ModelConfig c, int width)
{
    readonly double[][] _mass = Enumerable.Range(0, c.NLayers).Select(_ => new double[Math.Max(0, c.DMlp)]).ToArray();
    readonly long[][] _nonzero = Enumerable.Range(0, c.NLayers).Select(_ => new long[Math.Max(0, c.DMlp)]).ToArray();
    readonly Dictionary<(int L, int M, int I, int J), (double Sum, long Count)> _pairs = new();
    readonly long[] _fired = new long[width];
    long _tokens;

    public void CountTokens((int Index, double Value)[][] f)
    {
        _tokens += f.Length;
        foreach (var ft in f) foreach (var (i, _) in ft) _fired[i]++;
    }

    public void Relu(int l, (int Index, double Value)[] f, Iv[][] u, Iv[] e)
    {
        for (int m = 0; m < e.Length; m++)
        {
            // |E| (ReLU with the gate of c's sign: E ≥ 0; smooth activations: either sign); provably non-zero when 0 ∉ E.
            _mass[l][m] += e[m].Mag;
            if (e[m].Lo <= 0 && e[m].Hi >= 0) continue;
            _nonzero[l][m]++;
            for (int a = 0; a < f.Length; a++)
                for (int b = a + 1; b < f.Length; b++)
                {
                    var (i, fi) = f[a]; var (j, fj) = f[b];
                    double ui = 0.5 * (u[i][m].Lo + u[i][m].Hi), uj = 0.5 * (u[j][m].Lo + u[j][m].Hi);
                    bool iBig = Math.Abs(fi * ui) >= Math.Abs(fj * uj);
                    double big = iBig ? fi : fj, small = iBig ? fj : fi, ubig = iBig ? ui : uj, usmall = iBig ? uj : ui;
                    if (big == 0 || ubig == 0) continue;
                    double strength = small / big * Math.Abs(usmall / ubig);
                    var key = (l, m, Math.Min(i, j), Math.Max(i, j));
                    _pairs[key] = _pairs.TryGetValue(key, out var v) ? (v.Sum + strength, v.Count + 1) : (strength, 1);
                }
        }
    }

    /// <summary>The ranked terms (ReLU neurons by E mass, ReLU pairs and attention pairs by strength) and the
    /// FLOPs of the dataset-independent attention pair table.</summary>
    public (JsonArray Terms, long Flops) Ranked(Tables tab, int top = 50)
    {
        var terms = new List<JsonObject>();
        double tokens = Math.Max(1, _tokens);
        for (int l = 0; l < c.NLayers && !c.AttnOnly; l++)
            foreach (var m in Enumerable.Range(0, c.DMlp).Where(m => _mass[l][m] > 0).OrderByDescending(m => _mass[l][m]).Take(top))
                terms.Add(new JsonObject
                {
                    ["kind"] = "relu-neuron", ["layer"] = l, ["neuron"] = m,
                    ["e_mass"] = _mass[l][m], ["nonzero_fraction"] = _nonzero[l][m] / tokens,
                });
        foreach (var ((l, m, i, j), (sum, count)) in _pairs.OrderByDescending(p => p.Value.Sum).Take(top))
            terms.Add(new JsonObject
            {
                ["kind"] = "relu-pair", ["layer"] = l, ["neuron"] = m, ["feature_i"] = i, ["feature_j"] = j,
                ["strength"] = sum / tokens, ["frequency"] = count / tokens,
            });
        var occurring = Enumerable.Range(0, width).Where(i => _fired[i] > 0).ToArray();
        long flops = 0;
        for (int l = 0; l < c.NLayers; l++)
            for (int h = 0; h < c.NHeads; h++)
            {
                var at = tab.Attn[l];
                double Mid(Iv x) => 0.5 * (x.Lo + x.Hi);
                var B = new double[occurring.Length, occurring.Length];
                for (int a = 0; a < occurring.Length; a++)
                    for (int b = 0; b < occurring.Length; b++)
                    {
                        double s = 0;
                        for (int e = 0; e < c.DHead; e++) s += Mid(at.Q[h][occurring[a]][e]) * Mid(at.K[h][occurring[b]][e]);
                        B[a, b] = s;
                    }
                flops += (long)occurring.Length * occurring.Length * (2L * c.DHead + 2);
                var cand = new List<(int I, int J, double Dep)>();
                for (int a = 0; a < occurring.Length; a++)
                {
                    double mean = 0;
                    for (int b = 0; b < occurring.Length; b++) mean += B[a, b] / occurring.Length;
                    for (int b = 0; b < occurring.Length; b++) cand.Add((occurring[a], occurring[b], Math.Abs(B[a, b] - mean)));
                }
                foreach (var (i, j, dep) in cand.OrderByDescending(x => x.Dep).Take(top))
                    terms.Add(new JsonObject
                    {
                        ["kind"] = "attention-pair", ["layer"] = l, ["head"] = h, ["feature_i"] = i, ["feature_j"] = j,
                        ["strength"] = dep, ["frequency"] = Math.Min(_fired[i], _fired[j]) / tokens,
                    });
            }
        return (new JsonArray(terms.Select(t => (JsonNode)t).ToArray()), flops);
    }
}
