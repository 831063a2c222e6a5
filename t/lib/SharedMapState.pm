package SharedMapState;

# State files for the tests, in the format of docs/persistence.md: build one,
# and check and describe one as text.

use strict;
use warnings;
use Compress::Zlib ();
use Exporter 'import';

our @EXPORT_OK = qw(state_file describe);

my @TYPES = qw(int long string);
my @KINDS = ('unknown', 'tinymap', 'hashmap');

# state_file(kind, [key, type, value, expire], ...): kind 1 tinymap, 2 hashmap;
# type 0 int, 1 long, 2 string; expire in unix seconds, 0 never.
sub state_file {
    my ($kind, @records) = @_;
    my $body = '';
    for my $r (@records) {
        my ($k, $t, $v, $e) = @$r;
        my $val = $t == 0 ? pack('l<', $v) : $t == 1 ? pack('q<', $v) : $v;
        $body .= pack('V C V Q<', length $k, $t, $e, length $val) . $k . $val;
    }
    my $data = 'SHMSTATE' . pack('V V Q< V V', 1, $kind, scalar @records, time, 0) . $body;
    return $data . pack('V', Compress::Zlib::crc32($data));
}

# "ok KIND COUNT" then one "key type value never|expires" line per record,
# sorted; or a line saying what is wrong with the file.
sub describe {
    my ($data) = @_;
    return "too short\n" if length($data) < 36;
    my ($magic, $version, $kind, $count) = unpack('a8 V V Q<', $data);
    return "bad magic\n" if $magic ne 'SHMSTATE';
    return "version $version\n" if $version != 1;
    my $crc = unpack('V', substr($data, -4));
    return "checksum mismatch\n" if $crc != Compress::Zlib::crc32(substr($data, 0, -4));
    my $pos = 32;
    my @out;
    for (1 .. $count) {
        return "record cut short\n" if $pos + 17 > length($data) - 4;
        my ($klen, $type, $expire, $vlen) = unpack('V C V Q<', substr($data, $pos, 17));
        $pos += 17;
        return "record cut short\n" if $pos + $klen + $vlen > length($data) - 4;
        my $key = substr($data, $pos, $klen);
        $pos += $klen;
        my $v = substr($data, $pos, $vlen);
        $pos += $vlen;
        my $val = $type == 0 ? unpack('l<', $v) : $type == 1 ? unpack('q<', $v) : $v;
        push @out, join(' ', $key, $TYPES[$type] // "type$type", $val, $expire ? 'expires' : 'never');
    }
    return "trailing bytes\n" if $pos != length($data) - 4;
    return join '', "ok $KINDS[$kind] $count\n", map { "$_\n" } sort @out;
}

1;
