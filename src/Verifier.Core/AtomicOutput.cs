namespace Verifier.Core;

/// <summary>Writes that either complete or leave nothing behind: a temporary sibling, then a rename.</summary>
public static class AtomicOutput
{
    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes)
    {
        string full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        string tmp = $"{full}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write))
            {
                fs.Write(bytes);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }

    public static void WriteAllText(string path, string text) =>
        WriteAllBytes(path, System.Text.Encoding.UTF8.GetBytes(text));

    /// <summary>True when <see cref="WriteDirectory"/> would refuse <paramref name="dir"/>: check before long work.</summary>
    public static bool WouldRefuse(string dir, bool force)
    {
        string full = Path.GetFullPath(dir);
        return File.Exists(full) || (!force && Directory.Exists(full) && Directory.EnumerateFileSystemEntries(full).Any());
    }

    /// <summary>Builds a directory in a temporary sibling with <paramref name="fill"/>, then moves it into
    /// place. An existing non-empty directory is refused unless <paramref name="force"/> is set, in which
    /// case it is replaced only after the new one is complete.</summary>
    public static void WriteDirectory(string dir, bool force, Action<string> fill)
    {
        string full = Path.GetFullPath(dir).TrimEnd(Path.DirectorySeparatorChar);
        bool exists = Directory.Exists(full);
        if (File.Exists(full)) throw new OutputExistsException(full);
        if (exists && Directory.EnumerateFileSystemEntries(full).Any() && !force) throw new OutputExistsException(full);
        string parent = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(parent);
        string tmp = Path.Combine(parent, $".{Path.GetFileName(full)}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(tmp);
        try
        {
            fill(tmp);
            if (exists)
            {
                string old = tmp + ".old";
                Directory.Move(full, old);
                Directory.Move(tmp, full);
                Directory.Delete(old, recursive: true);
            }
            else
            {
                Directory.Move(tmp, full);
            }
        }
        finally
        {
            if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
        }
    }
}
