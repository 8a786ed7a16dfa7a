using System.Security.Cryptography;

namespace Verifier.Core;

public static class Hashing
{
    /// <summary>Lower-case hex SHA-256 of a file's bytes.</summary>
    public static string Sha256File(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    public static string Sha256(ReadOnlySpan<byte> bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));
}
