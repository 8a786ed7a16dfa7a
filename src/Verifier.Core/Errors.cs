namespace Verifier.Core;

/// <summary>A failure the user can act on: bad input, a refused configuration, a mismatch.
/// The CLI prints <see cref="Exception.Message"/> on stderr and exits with <see cref="ExitCode"/>.</summary>
public abstract class VerifierException(string message, Exception? inner = null) : Exception(message, inner)
{
    public abstract int ExitCode { get; }
}

/// <summary>A file could not be read as what it claims to be (safetensors, JSON, dataset).</summary>
public sealed class InvalidInputException(string file, string where, string problem, Exception? inner = null)
    : VerifierException($"{file}: {where}: {problem}", inner)
{
    public string File { get; } = file;
    public string Where { get; } = where;
    public override int ExitCode => ExitCodes.InvalidInput;
}

/// <summary>The command line asks for something inconsistent (an option that does not apply, a value out of range).</summary>
public sealed class UsageException(string message) : VerifierException(message)
{
    public override int ExitCode => ExitCodes.Usage;
}

/// <summary>A model configuration asks for something this version does not implement.</summary>
public sealed class UnsupportedConfigException(string file, string field, string problem)
    : VerifierException($"{file}: field '{field}': {problem}")
{
    public override int ExitCode => ExitCodes.Unsupported;
}

/// <summary>An output could not be written without overwriting something the user did not ask to replace.</summary>
public sealed class OutputExistsException(string path)
    : VerifierException($"{path}: already exists; choose another path or pass --force to replace it")
{
    public override int ExitCode => ExitCodes.OutputExists;
}

/// <summary>Two inputs that must belong together do not (a crosscoder trained on another model's weights).</summary>
public sealed class MismatchException(string message) : VerifierException(message)
{
    public override int ExitCode => ExitCodes.Mismatch;
}

/// <summary>Finite inputs whose float64 evaluation overflows (a logit, a cross-entropy or an interval endpoint becomes
/// ±∞ or NaN): there is no finite loss to report and no finite bound to write.</summary>
public sealed class NumericException(string file, string where, string problem)
    : VerifierException($"{file}: {where}: {problem}")
{
    public override int ExitCode => ExitCodes.Numeric;
}

public static class ExitCodes
{
    public const int Ok = 0;
    public const int Failure = 1;
    public const int Usage = 2;
    public const int InvalidInput = 3;
    public const int Unsupported = 4;
    public const int OutputExists = 5;
    public const int Mismatch = 6;
    public const int Rejected = 7;
    public const int AuditBroken = 8;
    public const int Numeric = 9;
}
