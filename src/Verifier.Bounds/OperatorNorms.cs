namespace Verifier.Bounds;

/// <summary>Sound upper bounds on operator 2-norms (proofs/N1-operator-norms.md): for A [rows, cols] row-major
/// acting as x ↦ x A, ‖A‖₂ ≤ min(‖A‖_F, √(‖A‖₁ ‖A‖_∞)); every sum and product rounded up.</summary>
public static class OperatorNorms
{
    public static double Upper(double[] a, int off, int rows, int cols)
    {
        double frob = 0;
        var colSum = new double[cols];
        double maxRow = 0;
        for (int r = 0; r < rows; r++)
        {
            double rowSum = 0;
            for (int c = 0; c < cols; c++)
            {
                double x = Math.Abs(a[off + r * cols + c]);
                frob = Up.Add(frob, Up.Mul(x, x));
                rowSum = Up.Add(rowSum, x);
                colSum[c] = Up.Add(colSum[c], x);
            }
            maxRow = Math.Max(maxRow, rowSum);
        }
        double maxCol = colSum.Length == 0 ? 0 : colSum.Max();
        return Math.Min(Up.Sqrt(frob), Up.Sqrt(Up.Mul(maxRow, maxCol)));
    }

    /// <summary>FLOPs of <see cref="Upper"/>: per element abs, square, 3 adds (5); then max row/col, 2 sqrt, product, min.</summary>
    public static long Flops(int rows, int cols) => 5L * rows * cols + rows + cols + 4;

    /// <summary>‖ReLU(x W_in + b) W_out − ReLU(x' W_in + b) W_out‖ ≤ K ‖x − x'‖ with
    /// K = min(‖W_in‖₂ ‖W_out‖₂, Σ_m ‖W_in[:, m]‖ ‖W_out[m, :]‖) (proofs/L4-mlp-perturbation.md).</summary>
    public static double MlpLipschitz(double[] win, double[] wout, int d, int m)
    {
        double spectral = Up.Mul(Upper(win, 0, d, m), Upper(wout, 0, m, d));
        double perNeuron = 0;
        for (int j = 0; j < m; j++)
        {
            double a = 0, b = 0;
            for (int i = 0; i < d; i++) { a = Up.Add(a, Up.Mul(win[i * m + j], win[i * m + j])); b = Up.Add(b, Up.Mul(wout[j * d + i], wout[j * d + i])); }
            perNeuron = Up.Add(perNeuron, Up.Mul(Up.Sqrt(a), Up.Sqrt(b)));
        }
        return Math.Min(spectral, perNeuron);
    }

    public static long MlpLipschitzFlops(int d, int m) => Flops(d, m) + Flops(m, d) + 1 + (long)m * (2 * Verifier.Bounds.Flops.Norm(d) + 2) + 1;
}
