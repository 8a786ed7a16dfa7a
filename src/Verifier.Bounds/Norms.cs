using System.Text.Json.Nodes;
using Verifier.Core;

namespace Verifier.Bounds;

/// <summary>The norms every crosscoder strategy needs (proofs/N1-operator-norms.md), computed once.</summary>
public sealed class Norms
{
    public required double[][] WQ, WK, WV, WO;
    public required double[] KMlp;
    /// <summary>Per layer and neuron: ‖W_in[:, m]‖ and ‖W_out[m, :]‖ (upper), for the per-token active-set form of L4.</summary>
    public required double[][] WinCol, WoutRow;
    /// <summary>max_i ‖u_i − u_y‖ per label y, u_i the columns of W_U.</summary>
    public required double[] UnembedDiff;

    public static Norms Compute(ModelWeights w)
    {
        var c = w.Config; int d = c.DModel, dh = c.DHead, H = c.NHeads, L = c.NLayers, V = c.DVocabOut;
        double[][] Per(string name, int rows, int cols) => Enumerable.Range(0, L).Select(l =>
            Enumerable.Range(0, H).Select(h => OperatorNorms.Upper(w[$"blocks.{l}.attn.{name}"].Data, h * rows * cols, rows, cols)).ToArray()).ToArray();
        var wu = w["unembed.W_U"].Data;
        var ud = new double[V];
        for (int y = 0; y < V; y++)
            for (int i = 0; i < V; i++)
            {
                if (i == y) continue;
                double s = 0;
                for (int j = 0; j < d; j++) { var diff = Iv.Point(wu[j * V + i]) - Iv.Point(wu[j * V + y]); s = Up.Add(s, Up.Mul(diff.Mag, diff.Mag)); }
                ud[y] = Math.Max(ud[y], Up.Sqrt(s));
            }
        var n = new Norms
        {
            WQ = Per("W_Q", d, dh), WK = Per("W_K", d, dh), WV = Per("W_V", d, dh), WO = Per("W_O", dh, d),
            KMlp = c.AttnOnly ? new double[L] : Enumerable.Range(0, L).Select(l =>
                OperatorNorms.MlpLipschitz(w[$"blocks.{l}.mlp.W_in"].Data, w[$"blocks.{l}.mlp.W_out"].Data, d, c.DMlp)).ToArray(),
            UnembedDiff = ud,
            WinCol = Enumerable.Range(0, L).Select(l => c.AttnOnly ? [] : Enumerable.Range(0, c.DMlp).Select(m =>
                Up.Norm(Enumerable.Range(0, d).Select(i => w[$"blocks.{l}.mlp.W_in"].Data[i * c.DMlp + m]))).ToArray()).ToArray(),
            WoutRow = Enumerable.Range(0, L).Select(l => c.AttnOnly ? [] : Enumerable.Range(0, c.DMlp).Select(m =>
                Up.Norm(Enumerable.Range(0, d).Select(i => w[$"blocks.{l}.mlp.W_out"].Data[m * d + i]))).ToArray()).ToArray(),
        };
        double[][] S(double[][] x) => x.Select(Claim.Slack).ToArray();
        return new Norms
        {
            WQ = S(n.WQ), WK = S(n.WK), WV = S(n.WV), WO = S(n.WO), KMlp = Claim.Slack(n.KMlp), UnembedDiff = Claim.Slack(n.UnembedDiff),
            WinCol = S(n.WinCol), WoutRow = S(n.WoutRow),
        };
    }


    /// <summary>Per-token K for L4: Σ over neurons not provably inactive on the ε-ball around the nominal
    /// pre-activation of ‖W_in[:, m]‖‖W_out[m, :]‖, capped by the global K_mlp.</summary>
    public double ActiveLipschitz(int l, Iv[] nominalPre, double eps)
    {
        double k = 0;
        for (int m = 0; m < nominalPre.Length; m++)
            if (Up.Add(nominalPre[m].Hi, Up.Mul(eps, WinCol[l][m])) > 0) k = Up.Add(k, Up.Mul(WinCol[l][m], WoutRow[l][m]));
        return Math.Min(k, KMlp[l]);
    }

    public JsonObject ToClaim()
    {
        JsonArray Nested(double[][] x) => new(x.Select(r => (JsonNode)BoundProgram.Array(r)).ToArray());
        return new JsonObject
        {
            ["W_Q"] = Nested(WQ), ["W_K"] = Nested(WK), ["W_V"] = Nested(WV), ["W_O"] = Nested(WO),
            ["K_mlp"] = BoundProgram.Array(KMlp), ["unembed_diff"] = BoundProgram.Array(UnembedDiff),
            ["W_in_col"] = Nested(WinCol), ["W_out_row"] = Nested(WoutRow),
        };
    }

    public long Flops(ModelConfig c)
    {
        long f = 4L * c.NLayers * c.NHeads * OperatorNorms.Flops(c.DModel, c.DHead);
        if (!c.AttnOnly) f += c.NLayers * (OperatorNorms.MlpLipschitzFlops(c.DModel, c.DMlp) + 2L * c.DMlp * Verifier.Bounds.Flops.Norm(c.DModel));
        f += (long)c.DVocabOut * (c.DVocabOut - 1) * (3L * c.DModel + 2);
        return f;
    }
}

