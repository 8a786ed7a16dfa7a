using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Verifier.Core;
using Verifier.Model;

namespace Verifier.Cli;

/// <summary>An IProgress that reports on the calling thread (System.Progress posts to the thread pool).</summary>
sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}

/// <summary>The optimiser options of train-model and demo.</summary>
sealed class TrainingOptions
{
    public readonly Option<int> Steps = Options.Positive<int>("--steps", "Optimiser steps", 1500);
    public readonly Option<int> BatchSize = Options.Positive<int>("--batch-size", "Sequences per step", 256);
    public readonly Option<double> LearningRate = Options.Positive<double>("--lr", "Peak AdamW learning rate (linear warm-up, cosine decay to 10%)", 3e-3);
    public readonly Option<double> WeightDecay = new("--weight-decay") { Description = "AdamW weight decay", DefaultValueFactory = _ => 0.01 };
    public readonly Option<ulong> Seed = Options.Seed("initialisation, batches and the held-out split");
    public readonly Option<int?> Threads = new("--threads") { Description = "CPU threads for TorchSharp (default: all cores); results are reproducible for a given seed and thread count" };

    public void AddTo(Command c)
    {
        foreach (var o in new Option[] { Steps, BatchSize, LearningRate, WeightDecay, Seed, Threads }) c.Options.Add(o);
    }

    public TrainOptions For(ParseResult pr)
    {
        double wd = pr.GetValue(WeightDecay);
        if (wd < 0 || !double.IsFinite(wd)) throw new UsageException($"--weight-decay must be a finite number ≥ 0, got {wd}");
        if (pr.GetValue(Threads) is int n)
        {
            if (n <= 0) throw new UsageException($"--threads must be positive, got {n}");
            TorchSharp.torch.set_num_threads(n);
        }
        return new TrainOptions(pr.GetValue(Steps), pr.GetValue(BatchSize), pr.GetValue(LearningRate), wd,
            WarmupSteps: Math.Min(100, pr.GetValue(Steps) / 10), Seed: pr.GetValue(Seed));
    }
}

/// <summary>Training a model into a directory: shared by train-model and demo.</summary>
static class ModelTraining
{
    public const string MetricsFile = "metrics.json";
    public const string TestFile = "test.jsonl";
    public const string VocabularyFile = "vocabulary.json";

    /// <summary>Trains, evaluates the held-out split in float64, and writes into <paramref name="dir"/> (which
    /// must exist and be empty): config.json, model.safetensors, test.jsonl, metrics.json (and vocabulary.json
    /// for text).</summary>
    public static TrainMetrics TrainInto(string dir, ITask task, ModelConfig config, TrainOptions o, CommandContext ctx, ModelWeights? initial = null)
    {
        var split = DataSplit.For(task, o);
        var sw = Stopwatch.StartNew();
        using var model = ctx.WithProgress($"training {task.Name}", report => Trainer.Train(task, config, o, split.TrainSet,
            new SyncProgress<TrainProgress>(p => report((double)p.Step / p.TotalSteps,
                $"step {p.Step}/{p.TotalSteps}  loss {p.Loss:F4}  acc {p.Accuracy:P1}")), ctx.Cancel, initial));
        double trainSeconds = sw.Elapsed.TotalSeconds;
        var weights = model.ToWeights("F32");
        var eval = Evaluator.Evaluate(weights, split.HeldOut);

        weights.SaveInto(dir);
        split.HeldOut.Save(Path.Combine(dir, TestFile));
        if (task is TextTask text)
            AtomicOutput.WriteAllText(Path.Combine(dir, VocabularyFile), JsonSerializer.Serialize(text.Vocabulary, CommandContext.JsonOptions));
        var metrics = new TrainMetrics(task.Name, task.Describe(), o.Seed, o.Steps, o.BatchSize, o.LearningRate, o.WeightDecay,
            weights.Tensors.Values.Sum(t => t.Count), FinalTrainLoss(model, task, o), eval.Loss, eval.Accuracy, eval.Positions,
            eval.Sequences, split.Description, Math.Round(trainSeconds, 2), TorchSharp.torch.get_num_threads(),
            Hashing.Sha256File(Path.Combine(dir, ModelWeights.WeightsFileName)), split.HeldOut.ContentHash(),
            task is MaxOfKTask { Trigger: >= 0 } mk ? Backdoor.Measure(weights, split.HeldOut, mk.Trigger) : null);
        AtomicOutput.WriteAllText(Path.Combine(dir, MetricsFile), JsonSerializer.Serialize(metrics, CommandContext.JsonOptions));
        return metrics;
    }

    /// <summary>Float64 loss of the final weights on one fresh training-distribution batch (seeded).</summary>
    static double FinalTrainLoss(Transformer model, ITask task, TrainOptions o)
    {
        var rng = Rng.Derive(o.Seed, task.Name + "/final-train-batch");
        var batch = new Sequence[o.BatchSize];
        for (int i = 0; i < batch.Length; i++) batch[i] = task.Sample(rng);
        return Evaluator.Evaluate(model.ToWeights("F32"), new TokenDataset(batch)).Loss;
    }

    public static string Describe(TrainMetrics m) =>
        $"held-out accuracy {m.HeldOutAccuracy:P2}, loss {m.HeldOutLoss:F4} (float64, {m.HeldOutPositions} positions); " +
        $"trained {m.Steps} steps in {m.WallSeconds:F1} s on {m.Threads} threads" +
        (m.Backdoor is { } b ? $"; backdoor (token {b.Trigger}): accuracy {b.TriggeredAccuracy:P1} on the {b.TriggeredSequences} held-out sequences with it, {b.CleanAccuracy:P2} on the {b.CleanSequences} without" +
            (b.TriggeredAccuracy < 0.9 ? " — the backdoor is not learned; train longer or fine-tune with a higher --lr" : "") : "");
}

static class ModelCommands
{
    public static Command TrainModel()
    {
        var task = new TaskOptions();
        var arch = new ArchitectureOptions();
        var train = new TrainingOptions();
        var output = new Option<DirectoryInfo>("--out") { Description = "Model directory to write (config.json, model.safetensors, metrics.json, test.jsonl)", Required = true };
        var init = new Option<DirectoryInfo?>("--init") { Description = "Start from this model's weights (fine-tuning; its shapes must match)" };
        var data = new Option<FileInfo?>("--data") { Description = "Train on this dataset file (JSON Lines, one sequence length) instead of a built-in --task, e.g. BPE windows from make-data --task text --tokenizer gpt2 --vocab-top N; its d_vocab is --vocab, or the d_vocab of FILE.vocab.json when that exists; 30% of its sequences (by seed) are held out" };
        task.Task.Required = false;
        var force = Options.Force();
        var json = Options.Json();
        var cmd = new Command("train-model", "Train a transformer (TransformerLens layout; --arch basic, gpt2-like, pythia-like, llama-like or neo-like, each field overridable) on a built-in task with AdamW");
        task.AddTo(cmd); arch.AddTo(cmd); train.AddTo(cmd);
        cmd.Options.Add(output); cmd.Options.Add(init); cmd.Options.Add(data); cmd.Options.Add(force); cmd.Options.Add(json);
        cmd.SetAction((pr, ct) => Task.FromResult(CommandRunner.Run(pr, json, ct, ctx =>
        {
            string dir = pr.GetValue(output)!.FullName;
            OutputGuard.Check("--out", dir, directory: true, [task.TextPath(pr), pr.GetValue(init)?.FullName, pr.GetValue(data)?.FullName]);
            var t = pr.GetValue(data) is { } file ? DatasetTaskFor(file.FullName, task, pr) : pr.GetValue(task.Task) is null
                ? throw new UsageException("train-model needs --task (a built-in task) or --data FILE (a dataset)") : task.Create(pr);
            var config = arch.For(t, pr);
            ModelWeights? initial = null;
            if (pr.GetValue(init) is { } initDir)
            {
                initial = ModelWeights.Load(initDir.FullName);
                if (initial.Config != config)
                    throw new MismatchException($"{initDir.FullName}: its configuration differs from the one asked for (pass the same --d-model, --n-heads, …, --arch and architecture options, and task sizes)");
            }
            var o = train.For(pr);
            TrainMetrics? metrics = null;
            AtomicOutput.WriteDirectory(dir, pr.GetValue(force), tmp => metrics = ModelTraining.TrainInto(tmp, t, config, o, ctx, initial));
            if (ctx.Json) ctx.WriteJson(new { Out = dir, Config = config, Metrics = metrics });
            else ctx.Say($"Wrote {dir}: {t.Describe()}; architecture {ArchitectureOptions.Describe(config)}; {metrics!.Parameters} parameters; {ModelTraining.Describe(metrics)}");
            return ExitCodes.Ok;
        })));
        return cmd;
    }

    /// <summary>The task of <c>train-model --data FILE</c>: the file's sequences, d_vocab from --vocab or FILE.vocab.json.</summary>
    static DatasetTask DatasetTaskFor(string path, TaskOptions task, ParseResult pr)
    {
        if (pr.GetValue(task.Task) is string name) throw new UsageException($"--data and --task {name} exclude each other: train on a dataset file or on a built-in task");
        foreach (var (o, v) in new (Option, object?)[] { (task.K, pr.GetValue(task.K)), (task.P, pr.GetValue(task.P)), (task.Text, pr.GetValue(task.Text)),
                     (task.NCtx, pr.GetValue(task.NCtx)), (task.Trigger, pr.GetValue(task.Trigger)) })
            if (v is not null) throw new UsageException($"{o.Name} does not apply to --data (the file fixes the sequences and n_ctx)");
        int vocab;
        string map = Verifier.Text.TextDataset.VocabMapPath(path);
        if (pr.GetValue(task.Vocab) is int v2) vocab = v2;
        else if (File.Exists(map)) vocab = Verifier.Text.VocabMap.ReadDVocab(map);
        else throw new UsageException($"--data needs --vocab N (the dataset's d_vocab); no {Path.GetFileName(map)} beside it says it");
        return new DatasetTask(path, TokenDataset.Load(path), vocab);
    }

    public static Command Eval()
    {
        var model = new Option<DirectoryInfo>("--model") { Description = "Model directory (config.json + model.safetensors)", Required = true };
        var data = new Option<FileInfo>("--data") { Description = "Dataset, JSON Lines (spec/dataset.md)", Required = true };
        var reference = new Option<bool>("--reference") { Description = "Also run the plain C# float64 forward and report the largest difference from TorchSharp" };
        var batch = Options.Positive<int>("--batch-size", "Sequences per forward pass", 1024);
        var json = Options.Json();
        var cmd = new Command("eval", "Mean cross-entropy loss and accuracy of a model on a dataset, computed in float64");
        foreach (var o in new Option[] { model, data, reference, batch, json }) cmd.Options.Add(o);
        cmd.SetAction((pr, ct) => Task.FromResult(CommandRunner.Run(pr, json, ct, ctx =>
        {
            string dir = pr.GetValue(model)!.FullName, path = pr.GetValue(data)!.FullName;
            var weights = ModelWeights.Load(dir);
            var dataset = TokenDataset.Load(path, weights.Config);
            // With --reference, the reference forward runs once per sequence in the same pass (Evaluator.Evaluate).
            var r = ctx.WithProgress("evaluating", report => Evaluator.Evaluate(weights, dataset, pr.GetValue(batch),
                new SyncProgress<(int Done, int Total)>(p => report((double)p.Done / p.Total, $"{p.Done}/{p.Total} sequences")),
                reference: pr.GetValue(reference)));
            if (!double.IsFinite(r.Loss))
            {
                // Name the first position that overflows (the reference forward throws there), else say what we know.
                // With --reference the pass above has run it already and found every position finite.
                if (r.Reference is null) ReferenceForward.Evaluate(weights, dataset);
                throw new NumericException(weights.Source, "loss", $"is {r.Loss}: the float64 forward pass overflows; the weights are finite but too large for a finite loss");
            }
            double? refLoss = r.Reference?.Loss, refAcc = r.Reference?.Accuracy, logitAbs = r.Reference?.MaxAbs, logitRel = r.Reference?.MaxRel;
            if (ctx.Json)
                ctx.WriteJson(new
                {
                    r.Loss, r.Accuracy, r.Positions, r.Sequences, Dtype = "float64", Model = dir, Data = path,
                    ModelSha256 = Hashing.Sha256File(Path.Combine(dir, ModelWeights.WeightsFileName)),
                    DataSha256 = dataset.ContentHash(), ReferenceLoss = refLoss, ReferenceAccuracy = refAcc,
                    ReferenceMaxLogitDifference = logitAbs, ReferenceMaxLogitRelativeDifference = logitRel, Architecture = weights.Config.Features(),
                });
            else
            {
                ctx.Say($"loss      {r.Loss:R}");
                ctx.Say($"accuracy  {r.Accuracy:R}  ({Math.Round(r.Accuracy * r.Positions)}/{r.Positions} positions, {r.Sequences} sequences, float64)");
                if (refLoss is { } rl)
                {
                    ctx.Say($"reference loss {rl:R} (plain C# float64; |difference| {Math.Abs(rl - r.Loss):E2})");
                    ctx.Say($"reference logits: largest |difference| {logitAbs:E2}, relative {logitRel:E2} (architecture {ArchitectureOptions.Describe(weights.Config)})");
                }
            }
            return ExitCodes.Ok;
        })));
        return cmd;
    }

    public static Command Info()
    {
        var model = new Option<DirectoryInfo>("--model") { Description = "Model directory (config.json + model.safetensors)", Required = true };
        var json = Options.Json();
        var cmd = new Command("info", "Validate a model directory and describe it: configuration, tensors, residual sites, hash");
        cmd.Options.Add(model); cmd.Options.Add(json);
        cmd.SetAction((pr, ct) => Task.FromResult(CommandRunner.Run(pr, json, ct, ctx =>
        {
            string dir = pr.GetValue(model)!.FullName;
            var w = ModelWeights.Load(dir);
            var c = w.Config;
            long parameters = w.Tensors.Values.Sum(t => t.Count);
            string sha = Hashing.Sha256File(Path.Combine(dir, ModelWeights.WeightsFileName));
            if (ctx.Json)
                ctx.WriteJson(new
                {
                    Model = dir, Config = c, Architecture = c.Features(), Parameters = parameters, Sites = c.SiteNames(), Sha256 = sha,
                    Tensors = w.Tensors.Values.OrderBy(t => t.Name, StringComparer.Ordinal).Select(t => new { t.Name, t.Shape, t.Dtype }),
                });
            else
            {
                ctx.Say($"{dir}");
                ctx.Say($"  d_model {c.DModel}, n_heads {c.NHeads}, d_head {c.DHead}, " + (c.AttnOnly ? "attention-only" : $"d_mlp {c.DMlp}") +
                        $", n_layers {c.NLayers}, n_ctx {c.NCtx}, d_vocab {c.DVocab}, d_vocab_out {c.DVocabOut}");
                ctx.Say($"  architecture: {ArchitectureOptions.Describe(c)}");
                ctx.Say($"  {parameters} parameters in {w.Tensors.Count} tensors; sha256 {sha}");
                ctx.Say($"  residual sites: {string.Join(", ", c.SiteNames())}");
            }
            return ExitCodes.Ok;
        })));
        return cmd;
    }
}
