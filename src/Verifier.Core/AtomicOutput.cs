using System.Runtime.InteropServices;

namespace Verifier.Core;

/// <summary>Writes that either complete or leave nothing behind: a temporary sibling, then a rename. Without
/// overwrite the final step is exclusive: if the target appeared while the output was being built (another run
/// to the same path), this one fails with <see cref="OutputExistsException"/> and the other's output stands.</summary>
public static class AtomicOutput
{
    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes, bool overwrite = false)
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
            Publish(tmp, full, overwrite);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }

    public static void WriteAllText(string path, string text, bool overwrite = false) =>
        WriteAllBytes(path, System.Text.Encoding.UTF8.GetBytes(text), overwrite);

    /// <summary>Moves the complete file <paramref name="tmp"/> to <paramref name="full"/>. Without
    /// <paramref name="overwrite"/> this is link(2), which fails with EEXIST if the target exists at that instant,
    /// then unlink of the temporary: of two runs racing to one path exactly one wins. (.NET's File.Move without
    /// overwrite checks and then renames, which two racing writers can both pass.) Where link(2) is not available
    /// (another OS, a file system without hard links) the name is first reserved with O_CREAT|O_EXCL and the
    /// complete file renamed over the reservation.</summary>
    /// <summary>Runs <paramref name="write"/> on a private temporary sibling of <paramref name="full"/> and publishes it
    /// (<see cref="Publish"/>) only when it returns; the temporary never outlives the call.</summary>
    public static T Publishing<T>(string full, bool overwrite, Func<string, T> write)
    {
        string tmp = $"{full}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
        try
        {
            var result = write(tmp);
            Publish(tmp, full, overwrite);
            return result;
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }

    public static void Publish(string tmp, string full, bool overwrite)
    {
        if (overwrite) { File.Move(tmp, full, overwrite: true); return; }
        if (OperatingSystem.IsLinux())
        {
            if (Link(tmp, full) == 0) { File.Delete(tmp); return; }
            int errno = Marshal.GetLastPInvokeError();
            if (errno == 17 /* EEXIST */) throw new OutputExistsException(full);
            if (errno is not (1 /* EPERM */ or 18 /* EXDEV */ or 38 /* ENOSYS */ or 95 /* EOPNOTSUPP */))
                throw new IOException($"{full}: cannot create (link(2) failed with errno {errno})");
        }
        try { new FileStream(full, FileMode.CreateNew, FileAccess.Write).Dispose(); }
        catch (IOException) when (File.Exists(full) || Directory.Exists(full)) { throw new OutputExistsException(full); }
        File.Move(tmp, full, overwrite: true);
    }

    [DllImport("libc", EntryPoint = "link", SetLastError = true)]
    static extern int Link([MarshalAs(UnmanagedType.LPUTF8Str)] string oldPath, [MarshalAs(UnmanagedType.LPUTF8Str)] string newPath);

    /// <summary>True when <see cref="WriteDirectory"/> would refuse <paramref name="dir"/>: check before long work.</summary>
    public static bool WouldRefuse(string dir, bool force)
    {
        string full = Path.GetFullPath(dir);
        return File.Exists(full) || (!force && Directory.Exists(full) && Directory.EnumerateFileSystemEntries(full).Any());
    }

    /// <summary>Builds a directory in a temporary sibling with <paramref name="fill"/>, then moves it into
    /// place. An existing non-empty directory is refused unless <paramref name="force"/> is set, in which
    /// case it is replaced only after the new one is complete. Without force the move is rename(2), which
    /// fails on a non-empty target: a directory that appeared meanwhile is not replaced.</summary>
    public static void WriteDirectory(string dir, bool force, Action<string> fill)
    {
        string full = Path.GetFullPath(dir).TrimEnd(Path.DirectorySeparatorChar);
        if (File.Exists(full)) throw new OutputExistsException(full);
        if (Directory.Exists(full) && Directory.EnumerateFileSystemEntries(full).Any() && !force) throw new OutputExistsException(full);
        string parent = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(parent);
        string tmp = Path.Combine(parent, $".{Path.GetFileName(full)}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(tmp);
        try
        {
            fill(tmp);
            if (force && Directory.Exists(full))
            {
                string old = tmp + ".old";
                Directory.Move(full, old);
                Directory.Move(tmp, full);
                Directory.Delete(old, recursive: true);
            }
            else
            {
                // An empty directory the user made for the output may be replaced; a non-empty one never.
                if (Directory.Exists(full))
                {
                    try { Directory.Delete(full, recursive: false); }
                    catch (IOException) { throw new OutputExistsException(full); }
                }
                try { Directory.Move(tmp, full); }
                catch (IOException) when (Directory.Exists(full) || File.Exists(full)) { throw new OutputExistsException(full); }
            }
        }
        finally
        {
            if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
        }
    }
}
