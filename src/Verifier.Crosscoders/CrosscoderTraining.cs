using TorchSharp;
using Verifier.Core;
using Verifier.Model;
using static TorchSharp.torch;

namespace Verifier.Crosscoders;

public sealed record CrosscoderOptions(
    int Width = 512, string Mode = CrosscoderModes.TopK, int K = 8, double L1Coefficient = 2.0,
    int Steps = 3000, int BatchTokens = 1024, double LearningRate = 1e-3, ulong Seed = 0,
    long BufferBytes = 256L << 20, long DeadTokens = 100_000, double AuxCoefficient = 1.0 / 32, double InteractionPenalty = 0);

public sealed record CrosscoderProgress(int Step, int TotalSteps, double Loss, double Mse, double L0, double DeadFraction);

/// <summary>The state at the end of training that evaluation cannot see: dead features by the training tracker.</summary>
public sealed record CrosscoderTrainingSummary(double FinalLoss, double FinalMse, double FinalL0, double DeadFraction, long TokensSeen, long BufferTokens, bool BufferHeldEverything);

public static class CrosscoderTrainer
{
    /// <summary>mean over (token, neuron) of Σ_i |p_im| − max_i |p_im| with p_im = f_i U_im: the MLP input mass not carried by
    /// each neuron's dominant feature. Zero exactly when every (token, neuron) has at most one contributing feature.</summary>
    public static Tensor InteractionPenaltyTerm(Tensor f, Tensor u)
    {
        var p = (f.unsqueeze(2) * u.unsqueeze(0)).abs();   // |p_im|  [B, n, m]
        return (p.sum(1) - p.max(1).values).mean();
    }

    /// <summary>Refuses (exit 4), by field, a model the interaction penalty cannot mean anything for: it takes the MLP's
    /// pre-activation to be resid_mid · W_in + b_in feeding a ReLU, so normalisation before the MLP, a gated MLP or
    /// another activation would make it penalise something else. Attention options do not matter to it.</summary>
    public static void RequirePenaltyArchitecture(ModelConfig c)
    {
        string? field = c.AttnOnly ? null
            : c.Normalization != NormKind.None ? $"normalization_type {ModelConfig.NormName(c.Normalization)}"
            : c.GatedMlp ? "gated_mlp true"
            : c.Act != ActKind.Relu ? $"act_fn {ModelConfig.ActName(c.Act)}"
            : c.ParallelAttnMlp ? "parallel_attn_mlp true" : null;
        if (field is not null)
            throw new UnsupportedConfigException("config.json", field.Split(' ')[0],
                $"the interaction penalty (--interaction-penalty) assumes the MLP reads resid_mid directly through W_in into a ReLU (no normalisation, no gate, no parallel MLP); this model has {field}");
    }

    /// <summary>Trains a crosscoder on the model's activations at <paramref name="siteIndex"/> over
    /// <paramref name="sequences"/>, with Adam (5% linear warm-up, linear decay over the last 20%).
    /// relu-l1: loss = Σ_s ‖x^s − a'^s‖² + λ Σ_i f_i Σ_s ‖W_dec^s[i]‖ (λ warmed up from 0 over the first 5%).
    /// top-k modes: loss = Σ_s ‖x^s − a'^s‖². Both: plus the AuxK loss on dead features (spec/crosscoder.md).</summary>
    public static (Crosscoder Model, CrosscoderTrainingSummary Summary) Train(Transformer model, IReadOnlyList<Sequence> sequences,
        int[] siteIndex, CrosscoderOptions o, IProgress<CrosscoderProgress>? progress = null, CancellationToken ct = default) =>
        Train([(model, siteIndex)], sequences, o, progress, ct);

    /// <summary>One crosscoder over the sites of several models run on the same tokens (model diffing); the
    /// interaction penalty applies only with a single model.</summary>
    public static (Crosscoder Model, CrosscoderTrainingSummary Summary) Train(IReadOnlyList<(Transformer Model, int[] Sites)> models,
        IReadOnlyList<Sequence> sequences, CrosscoderOptions o, IProgress<CrosscoderProgress>? progress = null, CancellationToken ct = default)
    {
        random.manual_seed((long)(o.Seed % long.MaxValue));
        var model = models[0].Model;
        var siteIndex = models[0].Sites;
        int S = models.Sum(m => m.Sites.Length), d = model.Config.DModel, n = o.Width;
        using var buffer = new ActivationBuffer(models, sequences, o.BufferBytes, o.Seed);

        // Per-site scale c_s with E‖c_s h^s‖² = d_model, from the first buffer fill.
        double[] scales;
        Tensor meanNormalised;
        using (no_grad())
        {
            var first = buffer.Peek().to(ScalarType.Float64);
            var meanSq = first.pow(2).sum(2).mean([0]);                                  // [S]
            scales = meanSq.data<double>().ToArray().Select(m => m > 0 ? Math.Sqrt(d / m) : 1.0).ToArray();
            using var sc = tensor(scales).view(1, S, 1);
            meanNormalised = (first * sc).mean([0]).to(ScalarType.Float32);             // [S, d]
            first.Dispose(); meanSq.Dispose();
        }
        double decoderNorm = o.Mode == CrosscoderModes.ReluL1 ? 0.1 : 1.0 / Math.Sqrt(S);
        var cc = Crosscoder.Initialise(S, d, n, o.Mode, o.K, scales, meanNormalised, decoderNorm, o.Seed);
        meanNormalised.Dispose();

        var opt = optim.Adam(cc.Parameters, lr: o.LearningRate, beta1: 0.9, beta2: 0.999);

        // Interaction penalty: for each MLP layer whose input site (resid_mid) the crosscoder covers, the contributions
        // p_im = f_i (W_dec^{mid}[i] W_in)_m in model units; penalise the mass not carried by each neuron's dominant feature.
        var names = model.Config.SiteNames();
        var penaltyLayers = new List<(int Slot, Tensor Win)>();
        if (o.InteractionPenalty > 0 && models.Count > 1) throw new ArgumentException("the interaction penalty needs a single model");
        if (o.InteractionPenalty > 0) RequirePenaltyArchitecture(model.Config);
        if (o.InteractionPenalty > 0 && !model.Config.AttnOnly)
            for (int l = 0; l < model.Config.NLayers; l++)
            {
                int slot = Array.IndexOf(siteIndex, names.ToList().IndexOf($"blocks.{l}.hook_resid_mid"));
                if (slot >= 0) penaltyLayers.Add((slot, model.Weight($"blocks.{l}.mlp.W_in").to(ScalarType.Float32)));
            }
        var sinceFired = zeros(n, ScalarType.Int64);
        int warm = Math.Max(1, o.Steps / 20), decayFrom = (int)(o.Steps * 0.8);
        int kAux = Math.Max(1, Math.Min(n / 2, S * d / 2));
        double loss = double.NaN, mse = double.NaN, l0 = double.NaN, dead = 0;
        for (int step = 1; step <= o.Steps; step++)
        {
            ct.ThrowIfCancellationRequested();
            double lr = o.LearningRate * Math.Min(1.0, (double)step / warm)
                        * (step <= decayFrom ? 1.0 : Math.Max(0.0, (double)(o.Steps - step) / Math.Max(1, o.Steps - decayFrom)));
            foreach (var g in opt.ParamGroups) g.LearningRate = lr;
            double lambda = o.L1Coefficient * Math.Min(1.0, (double)step / warm);

            using var scope = NewDisposeScope();
            var x = cc.Normalise(buffer.Next(o.BatchTokens));                                // [B, S·d]
            var pre = cc.PreActivations(x);
            var f = cc.Activate(pre, training: true);
            var recon = cc.DecodeNormalised(f);
            var err = x - recon;
            var mseT = err.pow(2).sum(1).mean();
            var total = mseT;
            if (o.Mode == CrosscoderModes.ReluL1)
                total = total + lambda * (f * cc.DecoderNormSums()).sum(1).mean();

            foreach (var (slot, win) in penaltyLayers)
            {
                var decMid = cc.WDec.reshape(n, S, d).select(1, slot) / scales[slot];            // W_dec^{mid} in model units [n, d]
                var u = decMid.matmul(win);                                                   // U_i = W_dec^{mid}[i] W_in   [n, m]
                total = total + o.InteractionPenalty / penaltyLayers.Count * InteractionPenaltyTerm(f, u);
            }

            var deadMask = sinceFired.ge(o.DeadTokens);
            long deadCount = deadMask.sum().item<long>();
            if (deadCount > 0 && o.AuxCoefficient > 0)
            {
                // AuxK: the k_aux largest dead pre-activations must reconstruct what the live ones missed.
                var deadPre = nn.functional.relu(pre).masked_fill(deadMask.logical_not().unsqueeze(0), 0);
                var (v, i) = deadPre.topk((int)Math.Min(kAux, deadCount), dim: -1);
                var fa = zeros_like(deadPre).scatter(-1, i, v);
                var errHat = fa.matmul(cc.WDec);
                var target = err.detach();
                var aux = (target - errHat).pow(2).sum(1).mean() / target.pow(2).sum(1).mean().clamp_min(1e-12);
                total = total + o.AuxCoefficient * aux;
            }
            opt.zero_grad();
            total.backward();
            opt.step();

            using (no_grad())
            {
                var fired = f.detach().gt(0);
                var anyFired = fired.any(0);
                sinceFired.add_(x.shape[0]).masked_fill_(anyFired, 0);
                if (step % 25 == 0 || step == o.Steps)
                {
                    loss = total.item<float>(); mse = mseT.item<float>();
                    l0 = fired.sum(1).to(ScalarType.Float64).mean().item<double>();
                    dead = sinceFired.ge(o.DeadTokens).sum().item<long>() / (double)n;
                    if (!double.IsFinite(loss)) throw new InvalidOperationException($"crosscoder training diverged at step {step}; lower --lr");
                    progress?.Report(new CrosscoderProgress(step, o.Steps, loss, mse, l0, dead));
                }
            }
        }
        long seen = buffer.TokensServed;
        // Features count as dead when they did not fire within the last DeadTokens tokens (or all of training, if shorter).
        double deadFinal = sinceFired.ge(Math.Min(o.DeadTokens, seen)).sum().item<long>() / (double)n;
        sinceFired.Dispose();
        opt.Dispose();
        foreach (var (_, win) in penaltyLayers) win.Dispose();
        return (cc, new CrosscoderTrainingSummary(loss, mse, l0, deadFinal, seen, buffer.Capacity, buffer.HoldsEverything));
    }
}
