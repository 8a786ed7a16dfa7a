using System.CommandLine;
using System.Diagnostics;
using Verifier.Core;
using Verifier.Crosscoders;
using Verifier.Model;
using static TorchSharp.torch;

namespace Verifier.Cli;

/// <summary>Benchmarks: speed belongs here, not in tests.</summary>
static class BenchCommand
{
    public static Command Build()
    {
        var cmd = new Command("bench", "Measure throughput on this machine");
        cmd.Subcommands.Add(Crosscoder());
        cmd.Subcommands.Add(BenchBound.Build());
        cmd.Subcommands.Add(BenchTokenize.Build());
        return cmd;
    }

    public sealed record CrosscoderBench(
        int DModel, int Sites, int Width, string Mode, int K, int BatchTokens, int Steps, int Threads,
        double SecondsPerStep, double TokensPerSecond, double FlopsPerStep, double CrosscoderGflops,
        int MatmulSize, double MatmulGflops, double Ratio, double PeakMemoryMiB);

    static Command Crosscoder()
    {
        var dModel = Options.Positive<int>("--d-model", "Model width", 64);
        var layers = Options.Positive<int>("--n-layers", "Model layers (sites = 2·layers + 1)", 2);
        var width = Options.Positive<int>("--width", "Crosscoder width", 2048);
        var k = Options.Positive<int>("--k", "Top-k", 32);
        var batch = Options.Positive<int>("--batch-tokens", "Tokens per step", 4096);
        var steps = Options.Positive<int>("--steps", "Timed steps", 20);
        var matmul = Options.Positive<int>("--matmul-size", "N of the reference N×N×N float32 matmul", 2048);
        var json = Options.Json();
        var cmd = new Command("crosscoder",
            "Crosscoder training throughput (tokens/s and the matmul FLOP rate it implies) against a plain float32 matmul, and peak memory");
        foreach (var o in new Option[] { dModel, layers, width, k, batch, steps, matmul, json }) cmd.Options.Add(o);
        cmd.SetAction((pr, ct) => Task.FromResult(CommandRunner.Run(pr, json, ct, ctx =>
        {
            int d = pr.GetValue(dModel), n = pr.GetValue(width), B = pr.GetValue(batch), T = pr.GetValue(steps), N = pr.GetValue(matmul);
            if (pr.GetValue(k) > n) throw new UsageException($"--k exceeds --width");
            var config = ModelConfig.Create(d, 4, d / 4 > 0 ? d / 4 : 1, 4 * d, pr.GetValue(layers), 16, 64, 64, false);
            var weights = ModelWeights.Random(config, 1, std: 0.1);
            var seqs = new MaxOfKTask(64, 16).Generate(Math.Max(64, 2 * B / 16), 1, "bench").Sequences;
            int S = config.SiteNames().Count;
            using var model = new Transformer(weights);
            var siteIndex = Enumerable.Range(0, S).ToArray();

            // The real training loop, run for w and w + T steps: the difference is T steps without the setup.
            double Time(int s)
            {
                var o = new CrosscoderOptions(Width: n, K: pr.GetValue(k), Steps: s, BatchTokens: B, Seed: 0, DeadTokens: long.MaxValue);
                var sw = Stopwatch.StartNew();
                var (cc, _) = CrosscoderTrainer.Train(model, seqs, siteIndex, o, null, ctx.Cancel);
                cc.Dispose();
                return sw.Elapsed.TotalSeconds;
            }
            int w = 3;
            var (perStep, _) = ctx.WithProgress("crosscoder training steps", report =>
            {
                report(0, "setup"); double a = Time(w);
                report(0.3, "timed run"); double b = Time(w + T);
                report(1, "");
                return ((b - a) / T, 0);
            });
            // Matmul FLOPs per step: forward 2·B·Sd·n (encode) + 2·B·n·Sd (decode); backward 2·B·n·Sd (∂W_dec)
            // + 2·B·n·Sd (∂f) + 2·B·Sd·n (∂W_enc). Top-k, ReLU, AuxK and the optimiser are not counted.
            double flops = 10.0 * B * S * d * n;
            double gflops = flops / perStep / 1e9;

            double mm = ctx.WithProgress("reference matmul", report =>
            {
                using var scope = NewDisposeScope();
                var a = randn(N, N); var b2 = randn(N, N);
                a.matmul(b2);
                int reps = 0; var sw = Stopwatch.StartNew();
                while (sw.Elapsed.TotalSeconds < 3 || reps < 3) { a.matmul(b2); reps++; report(Math.Min(1, sw.Elapsed.TotalSeconds / 3), ""); }
                return 2.0 * N * N * N * reps / sw.Elapsed.TotalSeconds / 1e9;
            });
            var r = new CrosscoderBench(d, S, n, CrosscoderModes.TopK, pr.GetValue(k), B, T, get_num_threads(), perStep, B / perStep, flops,
                gflops, N, mm, gflops / mm, PeakMemoryMiB());
            if (ctx.Json) ctx.WriteJson(r);
            else
            {
                ctx.Say($"crosscoder d_model {d} × {S} sites, width {n}, top-{r.K}, {B} tokens/step, {r.Threads} threads");
                ctx.Say($"  {perStep * 1e3:F1} ms/step, {r.TokensPerSecond:N0} tokens/s, {gflops:F1} GFLOP/s (matmul FLOPs of forward and backward)");
                ctx.Say($"  plain {N}³ float32 matmul: {mm:F1} GFLOP/s; ratio {r.Ratio:P0}");
                ctx.Say($"  peak memory {r.PeakMemoryMiB:F0} MiB");
            }
            return ExitCodes.Ok;
        })));
        return cmd;
    }

    /// <summary>Peak resident set size of this process (VmHWM on Linux).</summary>
    public static double PeakMemoryMiB() => StatusMiB("VmHWM:") ?? Process.GetCurrentProcess().PeakWorkingSet64 / (1024.0 * 1024);

    /// <summary>Resident set size now (VmRSS on Linux); the working set where /proc is not available.</summary>
    public static double ResidentMiB() => StatusMiB("VmRSS:") ?? Environment.WorkingSet / (1024.0 * 1024);

    /// <summary>The kB value of <paramref name="field"/> in /proc/self/status, in MiB; null where there is no such file or line.</summary>
    static double? StatusMiB(string field)
    {
        const string status = "/proc/self/status";
        if (File.Exists(status))
            foreach (var line in File.ReadLines(status))
                if (line.StartsWith(field, StringComparison.Ordinal))
                    return double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) / 1024;
        return null;
    }
}
