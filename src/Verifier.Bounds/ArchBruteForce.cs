using System.Collections.Concurrent;
using Verifier.Core;

namespace Verifier.Bounds;

/// <summary>Brute force for a non-basic model (proofs/BF-brute-force.md with the enclosures of
/// proofs/R3G-generator-enclosures.md): <see cref="BruteForceStrategy"/> writes the same transcript (one BFB step per block
/// of consecutive sequences, then MEAN); here each sequence's forward pass runs in scalar R1 arithmetic
/// (<see cref="ArchForward"/>) on every core, and the block's sum is taken in sequence order.</summary>
public static class ArchBruteForce
{
    /// <summary>Sequences [first, end): the summed upper ends, the uncertified positions and the FLOPs of the block.</summary>
    public static (double Sum, int Errors, long Flops) Block(ArchForward model, ModelConfig c, IReadOnlyList<Sequence> data, int first, int end,
        double[] loss, int[] wrong, CancellationToken ct)
    {
        try
        {
            Parallel.ForEach(Partitioner.Create(first, end, Math.Max(1, (end - first) / (4 * Environment.ProcessorCount))),
                new ParallelOptions { CancellationToken = ct }, range =>
                {
                    for (int i = range.Item1; i < range.Item2; i++) (loss[i - first], wrong[i - first]) = model.Sequence(data[i]);
                });
        }
        catch (AggregateException e) when (e.InnerExceptions.FirstOrDefault(x => x is IntervalOverflowException) is { } overflow)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(overflow);
        }
        double sum = 0; int err = 0; long flops = 0;
        for (int i = first; i < end; i++)
        {
            sum = Up.Add(sum, loss[i - first]); err += wrong[i - first];
            flops += Flops.BruteForce(c, data[i].Labels);
        }
        return (sum, err, flops);
    }
}
