using Verifier.Core;

namespace Verifier.Bounds;

/// <summary>The crosscoder in plain float64: encoding (to choose the advice) and interval decoding.</summary>
public sealed class PlainCrosscoder(CrosscoderWeights cc, IReadOnlyList<string> modelSites)
{
    readonly int[] _modelSiteOfCc = cc.Config.Sites.Select(s => modelSites.ToList().IndexOf(s)).ToArray();

    /// <summary>Features of every token: the crosscoder's encoder on the model's float64 activations. Any values
    /// would give a sound bound (the lemmas hold for every a'); these make it tight.</summary>
    public (int Index, double Value)[][] Encode(ModelWeights w, int[] tokens)
    {
        var c = cc.Config; int S = c.Sites.Count, d = c.DModel, n = c.Width;
        var sites = ReferenceForward.Run(w, tokens).Sites;
        var enc = cc["W_enc"].Data; var benc = cc["b_enc"].Data;
        var result = new (int, double)[tokens.Length][];
        for (int t = 0; t < tokens.Length; t++)
        {
            var pre = (double[])benc.Clone();
            for (int s = 0; s < S; s++)
            {
                var h = sites[_modelSiteOfCc[s]];
                for (int i = 0; i < d; i++)
                {
                    double x = h[t, i];
                    int row = (s * d + i) * n;
                    for (int j = 0; j < n; j++) pre[j] += x * enc[row + j];
                }
            }
            IEnumerable<int> active = Enumerable.Range(0, n).Where(j => pre[j] > 0).OrderByDescending(j => pre[j]).ThenBy(j => j);
            if (c.Mode != CrosscoderModes.ReluL1) active = active.Take(c.K!.Value);
            result[t] = active.OrderBy(j => j).Select(j => (j, pre[j])).ToArray();
        }
        return result;
    }

    /// <summary>a'^s_t = Σ_i f_ti W_dec^s[i] + b_dec^s for crosscoder site index s, as enclosing boxes.</summary>
    public Iv[][] Decode((int Index, double Value)[][] features, int s)
    {
        var c = cc.Config; int S = c.Sites.Count, d = c.DModel;
        var dec = cc["W_dec"].Data; var bdec = cc["b_dec"].Data;
        var result = new Iv[features.Length][];
        for (int t = 0; t < features.Length; t++)
        {
            var a = new Iv[d];
            for (int i = 0; i < d; i++) a[i] = Iv.Point(bdec[s * d + i]);
            foreach (var (j, v) in features[t])
            {
                int row = (j * S + s) * d;
                for (int i = 0; i < d; i++) a[i] += dec[row + i] * Iv.Point(v);
            }
            result[t] = a;
        }
        return result;
    }
}
