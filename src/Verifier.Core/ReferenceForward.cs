namespace Verifier.Core;

/// <summary>The model of BOUNDS.md §1 and spec/model.md in plain C# float64, one sequence at a time: the ground truth
/// that the TorchSharp model is tested against, written from TransformerLens's components line by line (TransformerBlock,
/// LayerNorm/RMSNorm and their Pre forms, Attention with rotary, grouped-query and local attention, MLP and GatedMLP).</summary>
public static class ReferenceForward
{
    /// <summary>Residual stream at each site (ModelConfig.SiteNames order), each [T, d_model], and logits [T, d_vocab_out].</summary>
    public sealed record Result(double[][,] Sites, double[,] Logits);

    /// <param name="mlpPre">Optional hook (layer, position, pre-activation) → the pre-activation to use instead, for
    /// ablations of the MLP's input (interaction suppression). For a gated MLP the pre-activation is x·W_gate.</param>
    public static Result Run(ModelWeights w, int[] tokens, Func<int, int, double[], double[]>? mlpPre = null)
    {
        var c = w.Config;
        int T = tokens.Length, d = c.DModel;
        if (T > c.NCtx) throw new ArgumentException($"sequence of {T} tokens exceeds n_ctx {c.NCtx}");
        var WE = w["embed.W_E"].Data; var Wpos = c.HasPosEmbed ? w["pos_embed.W_pos"].Data : null;
        var h = new double[T, d];
        for (int t = 0; t < T; t++)
            for (int i = 0; i < d; i++) h[t, i] = WE[tokens[t] * d + i] + (Wpos is null ? 0 : Wpos[t * d + i]);   // h⁰_t = W_E[x_t] + W_pos[t]
        var sites = new List<double[,]> { (double[,])h.Clone() };

        for (int l = 0; l < c.NLayers; l++)
        {
            var attn = Attention(w, l, Normalize(w, $"blocks.{l}.ln1.", c.Normalization, h));
            if (c.AttnOnly)
            {
                Add(h, attn);
            }
            else if (c.ParallelAttnMlp)
            {
                var mlp = Mlp(w, l, Normalize(w, $"blocks.{l}.ln2.", c.Normalization, h), mlpPre);   // both read resid_pre
                Add(h, attn); Add(h, mlp);                                                            // (h + attn) + mlp
            }
            else
            {
                Add(h, attn);                                                                         // h^{l,mid} = h + attn
                sites.Add((double[,])h.Clone());
                Add(h, Mlp(w, l, Normalize(w, $"blocks.{l}.ln2.", c.Normalization, h), mlpPre));       // h^l = h^{l,mid} + MLP
            }
            sites.Add((double[,])h.Clone());
        }

        var x = Normalize(w, "ln_final.", c.FinalNorm, h);
        int V = c.DVocabOut;
        var WU = w["unembed.W_U"].Data; var bU = w["unembed.b_U"].Data;
        var logits = new double[T, V];
        for (int t = 0; t < T; t++)
            for (int v = 0; v < V; v++)
            {
                double s = bU[v];
                for (int i = 0; i < d; i++) s += x[t, i] * WU[i * V + v];
                logits[t, v] = s;
            }
        return new Result(sites.ToArray(), logits);
    }

    static void Add(double[,] h, double[,] a)
    {
        for (int t = 0; t < h.GetLength(0); t++) for (int i = 0; i < h.GetLength(1); i++) h[t, i] += a[t, i];
    }

    /// <summary>LN: (x − mean x)/√(mean (x − mean x)² + eps)·w + b; LNPre without w, b; RMS: x/√(mean x² + eps)·w;
    /// RMSPre without w; None: x itself.</summary>
    public static double[,] Normalize(ModelWeights w, string prefix, NormKind kind, double[,] h)
    {
        if (kind == NormKind.None) return h;
        int T = h.GetLength(0), d = h.GetLength(1);
        var g = kind is NormKind.LN or NormKind.RMS ? w[prefix + "w"].Data : null;
        var b = kind == NormKind.LN ? w[prefix + "b"].Data : null;
        bool centre = kind is NormKind.LN or NormKind.LNPre;
        double eps = w.Config.Eps;
        var y = new double[T, d];
        var row = new double[d];
        for (int t = 0; t < T; t++)
        {
            double mean = 0;
            if (centre) { for (int i = 0; i < d; i++) mean += h[t, i]; mean /= d; }
            double sq = 0;
            for (int i = 0; i < d; i++) { row[i] = h[t, i] - mean; sq += row[i] * row[i]; }
            double scale = Math.Sqrt(sq / d + eps);
            for (int i = 0; i < d; i++)
                y[t, i] = row[i] / scale * (g is null ? 1 : g[i]) + (b is null ? 0 : b[i]);
        }
        return y;
    }

    static double[,] Attention(ModelWeights w, int l, double[,] x)
    {
        var c = w.Config;
        int T = x.GetLength(0), d = c.DModel, H = c.NHeads, dh = c.DHead;
        string a = $"blocks.{l}.attn.", kvp = c.NKeyValueHeads is null ? "" : "_";
        var WQ = w[a + "W_Q"].Data; var WK = w[a + kvp + "W_K"].Data; var WV = w[a + kvp + "W_V"].Data; var WO = w[a + "W_O"].Data;
        var bQ = w[a + "b_Q"].Data; var bK = w[a + kvp + "b_K"].Data; var bV = w[a + kvp + "b_V"].Data; var bO = w[a + "b_O"].Data;
        var outp = new double[T, d];
        for (int t = 0; t < T; t++) for (int i = 0; i < d; i++) outp[t, i] = bO[i];
        var (sqrtDHead, baseScale, layerFactor) = c.AttnDivisor(l);
        double divisor = (sqrtDHead ? Math.Sqrt(dh) : baseScale) * layerFactor;
        for (int hd = 0; hd < H; hd++)
        {
            int kvh = c.KvHeadOf(hd);
            double[,] q = Project(x, WQ, bQ, hd, d, dh), k = Project(x, WK, bK, kvh, d, dh), v = Project(x, WV, bV, kvh, d, dh);
            if (c.Rotary) { Rotate(c, q); Rotate(c, k); }
            for (int t = 0; t < T; t++)
            {
                int first = c.FirstKey(l, t);
                var scores = new double[t + 1 - first];               // σ_ts = q_t·k_s / D_l, first ≤ s ≤ t
                for (int s = first; s <= t; s++)
                {
                    double dot = 0;
                    for (int e = 0; e < dh; e++) dot += q[t, e] * k[s, e];
                    scores[s - first] = dot / divisor;
                }
                double max = scores.Max(), sum = 0;
                for (int s = 0; s < scores.Length; s++) { scores[s] = Math.Exp(scores[s] - max); sum += scores[s]; }
                var z = new double[dh];                               // z_t = Σ_s p_ts v_s
                for (int s = first; s <= t; s++)
                    for (int e = 0; e < dh; e++) z[e] += scores[s - first] / sum * v[s, e];
                for (int i = 0; i < d; i++)                           // attn_t += z_t W_O[head]
                {
                    double acc = 0;
                    for (int e = 0; e < dh; e++) acc += z[e] * WO[(hd * dh + e) * d + i];
                    outp[t, i] += acc;
                }
            }
        }
        return outp;
    }

    /// <summary>The rotation angle of pair i (0 ≤ i &lt; rotary_dim/2) at position t: t / base^(2i/rotary_dim).</summary>
    public static double RotaryAngle(ModelConfig c, int t, int i) => t / Math.Pow(c.RotaryBase, i / (c.RotaryDim / 2.0));

    /// <summary>The two coordinates rotated together by pair i: (2i, 2i+1) with adjacent pairs (GPT-J), else (i, i + rotary_dim/2) (GPT-NeoX).</summary>
    public static (int A, int B) RotaryPair(ModelConfig c, int i) => c.RotaryAdjacentPairs ? (2 * i, 2 * i + 1) : (i, i + c.RotaryDim / 2);

    /// <summary>Rotary positions in place on [T, d_head]: (x_a, x_b) ← (x_a cos θ − x_b sin θ, x_b cos θ + x_a sin θ).</summary>
    static void Rotate(ModelConfig c, double[,] x)
    {
        for (int t = 0; t < x.GetLength(0); t++)
            for (int i = 0; i < c.RotaryDim / 2; i++)
            {
                double th = RotaryAngle(c, t, i), cos = Math.Cos(th), sin = Math.Sin(th);
                var (ia, ib) = RotaryPair(c, i);
                double xa = x[t, ia], xb = x[t, ib];
                x[t, ia] = xa * cos - xb * sin;
                x[t, ib] = xb * cos + xa * sin;
            }
    }

    static double[,] Project(double[,] h, double[] W, double[] b, int head, int d, int dh)
    {
        int T = h.GetLength(0);
        var r = new double[T, dh];
        for (int t = 0; t < T; t++)
            for (int e = 0; e < dh; e++)
            {
                double s = b[head * dh + e];
                for (int i = 0; i < d; i++) s += h[t, i] * W[(head * d + i) * dh + e];
                r[t, e] = s;
            }
        return r;
    }

    static double[] Linear(double[,] x, int t, double[] W, int n)
    {
        int d = x.GetLength(1);
        var r = new double[n];
        for (int j = 0; j < n; j++)
        {
            double s = 0;
            for (int i = 0; i < d; i++) s += x[t, i] * W[i * n + j];
            r[j] = s;
        }
        return r;
    }

    /// <summary>MLP: act(x W_in + b_in) W_out + b_out; gated (TransformerLens GatedMLP): (act(x W_gate) ⊙ (x W_in) + b_in) W_out + b_out.</summary>
    static double[,] Mlp(ModelWeights w, int l, double[,] x, Func<int, int, double[], double[]>? hook)
    {
        var c = w.Config;
        int T = x.GetLength(0), d = c.DModel, m = c.DMlp;
        string p = $"blocks.{l}.mlp.";
        var Win = w[p + "W_in"].Data; var bin = w[p + "b_in"].Data; var Wout = w[p + "W_out"].Data; var bout = w[p + "b_out"].Data;
        var Wgate = c.GatedMlp ? w[p + "W_gate"].Data : null;
        var r = new double[T, d];
        for (int t = 0; t < T; t++)
        {
            double[] post;
            if (Wgate is null)
            {
                var pre = Linear(x, t, Win, m);
                for (int j = 0; j < m; j++) pre[j] += bin[j];                 // x W_in + b_in
                if (hook is not null) pre = hook(l, t, pre);
                post = pre.Select(v => Activation.Apply(c.Act, v)).ToArray();
            }
            else
            {
                var gate = Linear(x, t, Wgate, m);                           // x W_gate
                if (hook is not null) gate = hook(l, t, gate);
                var lin = Linear(x, t, Win, m);                              // x W_in
                post = new double[m];
                for (int j = 0; j < m; j++) post[j] = Activation.Apply(c.Act, gate[j]) * lin[j] + bin[j];
            }
            for (int i = 0; i < d; i++)
            {
                double s = bout[i];
                for (int j = 0; j < m; j++) s += post[j] * Wout[j * d + i];
                r[t, i] = s;
            }
        }
        return r;
    }

    /// <summary>Cross-entropy −log softmax(z)_y, computed stably.</summary>
    public static double CrossEntropy(double[,] logits, int t, int y)
    {
        int V = logits.GetLength(1);
        double max = double.NegativeInfinity;
        for (int v = 0; v < V; v++) max = Math.Max(max, logits[t, v]);
        double sum = 0;
        for (int v = 0; v < V; v++) sum += Math.Exp(logits[t, v] - max);
        return max + Math.Log(sum) - logits[t, y];
    }

    /// <summary>Mean cross-entropy and accuracy over every labelled position of the dataset.</summary>
    public static (double Loss, double Accuracy, long Positions) Evaluate(ModelWeights w, TokenDataset data) => Evaluate(w, data, null);

    /// <summary>As <see cref="Evaluate(ModelWeights, TokenDataset)"/>, with a hook on every MLP pre-activation
    /// (sequence index, layer, position, pre) → pre to use.</summary>
    public static (double Loss, double Accuracy, long Positions) Evaluate(ModelWeights w, TokenDataset data,
        Func<int, int, int, double[], double[]>? mlpPre)
    {
        double total = 0; long n = 0, correct = 0;
        for (int q = 0; q < data.Count; q++)
        {
            var s = data.Sequences[q];
            int seq = q;
            var logits = Run(w, s.Tokens, mlpPre is null ? null : (l, t, pre) => mlpPre(seq, l, t, pre)).Logits;
            foreach (var (ce, hit) in Score(w, q, s, logits))
            {
                total += ce;
                n++;
                if (hit) correct++;
            }
        }
        return (total / n, (double)correct / n, n);
    }

    /// <summary>The cross-entropy of each labelled position of sequence <paramref name="q"/> (in position order) given its
    /// logits, and whether the first largest logit is the label; the <see cref="Overflow"/> error at a non-finite one.</summary>
    public static List<(double Ce, bool Correct)> Score(ModelWeights w, int q, Sequence s, double[,] logits)
    {
        var scored = new List<(double, bool)>();
        for (int t = 0; t < s.Tokens.Length; t++)
        {
            int y = s.Labels[t];
            if (y < 0) continue;
            double ce = CrossEntropy(logits, t, y);
            if (!double.IsFinite(ce)) throw Overflow(w, q, t, logits, ce);
            int arg = 0;
            for (int v = 1; v < logits.GetLength(1); v++) if (logits[t, v] > logits[t, arg]) arg = v;
            scored.Add((ce, arg == y));
        }
        return scored;
    }

    /// <summary>The error for a position whose float64 cross-entropy is not finite: the weights are finite (checked
    /// at load), so a product or sum overflowed on the way to the logits.</summary>
    public static NumericException Overflow(ModelWeights w, int sequence, int position, double[,] logits, double ce)
    {
        double worst = 0;
        for (int v = 0; v < logits.GetLength(1); v++)
            if (!double.IsFinite(logits[position, v]) || Math.Abs(logits[position, v]) > Math.Abs(worst)) { worst = logits[position, v]; if (!double.IsFinite(worst)) break; }
        string what = double.IsFinite(worst) ? $"the cross-entropy is {ce} (largest |logit| {Math.Abs(worst):G3})" : $"a logit is {worst}";
        return new NumericException(w.Source, $"sequence {sequence + 1}, position {position}",
            $"the float64 forward pass overflows: {what}; the weights are finite but too large for a finite loss or bound");
    }
}
