package Test::Nginx::Socket;

# Minimal stand-in for OpenResty's Test::Nginx::Socket (CPAN: Test-Nginx).
#
# Only put on @INC when the real module is not installed (see README.md next
# to this file).  It implements the subset of sections and helpers that this
# project's t/*.t files use, with the same semantics, test names and test
# counts as the real module, so that the same .t files run unchanged with
# either implementation.  Written from the real module's documentation and
# behaviour; no code is shared with it.

use strict;
use warnings;
use v5.10.1;

# Lower-case "-base": inherit from Test::Base and get its exports (plan,
# blocks, ...) without Spiffy's source filter.
use Test::Base -base;

our $VERSION = '0.01_fallback';

use POSIX qw( SIGQUIT SIGKILL SIGTERM SIGHUP SIGUSR1 WNOHANG EAGAIN EINTR );
use Time::HiRes qw( sleep time );
use File::Spec ();
use File::Path qw( make_path remove_tree );
use File::Find qw( find );
use List::Util qw( shuffle min );
use Scalar::Util qw( looks_like_number );
use IO::Socket::INET ();
use IO::Select ();
use Errno ();
use Carp qw( croak );

our @EXPORT = qw( env_to_nginx is_str plan run_tests run_test
  repeat_each config_preamble worker_connections
  master_process_enabled
  no_long_string workers master_on master_off
  log_level no_shuffle no_root_location use_hup
  server_name
  server_addr server_root html_dir server_port server_port_for_client
  timeout no_nginx_manager check_accum_error_log
  add_block_preprocessor bail_out add_test_cleanup_handler add_cleanup_handler
  add_response_body_check
);

# ---------------------------------------------------------------------------
# Settings (same environment variables and defaults as the real module)
# ---------------------------------------------------------------------------

our $NginxBinary          = $ENV{TEST_NGINX_BINARY} || 'nginx';
our $Workers              = 1;
our $WorkerConnections    = 64;
our $LogLevel             = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $MasterProcessEnabled = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $DaemonEnabled        = 'on';
our $ServerAddr           = '127.0.0.1';
our $ServerName           = 'localhost';
our $ServerPort           = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;
our $ServerPortForClient  = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort || 1984;
our $NoRootLocation       = 0;
our $RepeatEach           = 1;
our $NoShuffle            = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $Timeout              = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $TestNginxSleep       = $ENV{TEST_NGINX_SLEEP} || 0.015;
our $UseHup               = $ENV{TEST_NGINX_USE_HUP};
our $Verbose              = $ENV{TEST_NGINX_VERBOSE};
our $NoNginxManager       = $ENV{TEST_NGINX_NO_NGINX_MANAGER} || 0;
our $CheckAccumErrLog     = $ENV{TEST_NGINX_CHECK_ACCUM_ERR_LOG};
our $LoadModules          = $ENV{TEST_NGINX_LOAD_MODULES};
our $ReusePort            = $ENV{TEST_NGINX_REUSE_PORT};
our $EventType            = $ENV{TEST_NGINX_EVENT_TYPE};
our $PostponeOutput       = $ENV{TEST_NGINX_POSTPONE_OUTPUT};
our $Randomize            = $ENV{TEST_NGINX_RANDOMIZE};
our $WorkerUser           = $ENV{TEST_NGINX_WORKER_USER};
# As the real module's TEST_NGINX_USE_VALGRIND: nginx runs under valgrind's
# memcheck (`full`: with --leak-check=full), with valgrind.suppress (or
# t/valgrind.suppress) as suppressions. Each process writes its report to
# logs/valgrind.PID; when nginx stops, an error whose stack passes through the
# module under test (TEST_NGINX_VALGRIND_MODULE, a regex; default
# "shared_map") fails the block, others are shown. Timeouts are 5 times longer.
our $UseValgrind          = $ENV{TEST_NGINX_USE_VALGRIND};
our $ValgrindModule       = $ENV{TEST_NGINX_VALGRIND_MODULE} || 'shared_map';
our $ValgrindErrors       = 0;
our $ForceRestartOnTest   = defined $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST}
                            ? $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} : 1;
our $NoLongString;
our $ConfigPreamble = '';
our $FilterHttpConfig;
our (@EnvToNginx, @BlockPreprocessors, @CleanupHandlers, @TestCleanupHandlers,
     @ResponseBodyChecks);

# seconds to wait for nginx to come up / to accept connections
our $StartupTimeout = $ENV{TEST_NGINX_STARTUP_TIMEOUT} || ($UseValgrind ? 60 : 5);

our ($NginxVersion, $NginxRawVersion, $NginxV);
our ($PrevConfig, $ConfigVersion, $RandPorts, $ErrLogFilePos);
our $FirstTime = 1;
our $MainPid = $$;          # END must not act in forked children
our $TotalConnectingTimeouts = 0;

srand($$ ^ int(time() * 1000));

if ($Randomize) {
    $ServerPort = gen_rand_port(1000, {})
        // die "Cannot find an available listening port number\n";
    $ServerPortForClient = $ServerPort;
}

our $ServRoot = $Randomize
    ? File::Spec->rel2abs("t/servroot_$ServerPort")
    : ($ENV{TEST_NGINX_SERVROOT} || File::Spec->rel2abs('t/servroot'));
$ServRoot = File::Spec->rel2abs($ServRoot);
$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;

our $LogDir     = File::Spec->catfile($ServRoot, 'logs');
our $ErrLogFile = File::Spec->catfile($LogDir, 'error.log');
our $AccLogFile = File::Spec->catfile($LogDir, 'access.log');
our $HtmlDir    = File::Spec->catfile($ServRoot, 'html');
our $ConfDir    = File::Spec->catfile($ServRoot, 'conf');
our $ConfFile   = File::Spec->catfile($ConfDir, 'nginx.conf');
our $PidFile    = File::Spec->catfile($LogDir, 'nginx.pid');
our $CacheDir   = File::Spec->catfile($ServRoot, 'cache');
# where the nginx command's stderr is captured (extension); under logs/, which
# the real module removes whole, so the two runners can share a servroot
our $StderrFile = File::Spec->catfile($LogDir, 'nginx.stderr');

# Read-only aliases for code written against Test::Nginx::Util globals.
{
    no strict 'refs';
    for my $v (qw( ServerPort ServerPortForClient ServRoot ErrLogFile
                   AccLogFile HtmlDir ConfFile PidFile NginxBinary
                   NginxVersion RepeatEach Workers ))
    {
        *{"Test::Nginx::Util::$v"} = \${"Test::Nginx::Socket::$v"};
    }
}

# ---------------------------------------------------------------------------
# Exported configuration helpers
# ---------------------------------------------------------------------------

sub _getset { my $ref = shift; $$ref = shift if @_; return $$ref }

sub repeat_each (@)            { _getset(\$RepeatEach, @_) }
sub workers (@)                { _getset(\$Workers, @_) }
sub worker_connections (@)     { _getset(\$WorkerConnections, @_) }
sub log_level (@)              { _getset(\$LogLevel, @_) }
sub timeout (@)                { my $t = _getset(\$Timeout, @_); $UseValgrind && !@_ ? $t * 5 : $t }
sub server_port (@)            { _getset(\$ServerPort, @_) }
sub server_port_for_client (@) { _getset(\$ServerPortForClient, @_) }
sub server_addr (@)            { _getset(\$ServerAddr, @_) }
sub server_name (@)            { _getset(\$ServerName, @_) }
sub master_on ()               { $MasterProcessEnabled = 'on' }
sub master_off ()              { $MasterProcessEnabled = 'off' }
sub no_shuffle ()              { $NoShuffle = 1 }
sub no_root_location ()        { $NoRootLocation = 1 }
sub no_long_string ()          { $NoLongString = 1 }
sub no_nginx_manager ()        { $NoNginxManager = 1 }
sub use_hup ()                 { $UseHup = 1 }
sub check_accum_error_log ()   { $CheckAccumErrLog = 1 }
sub config_preamble ($)        { $ConfigPreamble = shift }
sub html_dir ()                { $HtmlDir }
sub server_root ()             { $ServRoot }
sub sleep_time                 { $TestNginxSleep }
sub verbose                    { $Verbose }

sub master_process_enabled (@) {
    if (@_) {
        $MasterProcessEnabled = shift() ? 'on' : 'off';
        return;
    }
    return $MasterProcessEnabled;
}

sub env_to_nginx (@) {
    croak "env_to_nginx: no arguments specified" if !@_;
    for my $v (@_) {
        croak "env_to_nginx: bad argument value: $v\n"
            if $v !~ /^[A-Za-z_]/ || $v =~ /\n/;
        push @EnvToNginx, $v;
    }
}

sub add_block_preprocessor (&) { unshift @BlockPreprocessors, shift }
sub add_cleanup_handler ($)    { unshift @CleanupHandlers, shift }
sub add_test_cleanup_handler ($) { unshift @TestCleanupHandlers, shift }
sub add_response_body_check ($) { push @ResponseBodyChecks, shift }
sub set_http_config_filter ($) { $FilterHttpConfig = shift }

sub bail_out (@) {
    cleanup();
    Test::More::BAIL_OUT(join '', @_);
}

# ---------------------------------------------------------------------------
# Small utilities
# ---------------------------------------------------------------------------

sub _no_ending { Test::More->builder->no_ending(1) }

sub _vlog { warn @_ if $Verbose }

sub parse_time ($) {
    my $tm = shift;
    if (defined $tm) {
        if ($tm =~ s/([^_a-zA-Z])ms$/$1/) {
            $tm = $tm / 1000;
        } else {
            $tm =~ s/([^_a-zA-Z])s$/$1/;
        }
    }
    return $tm;
}

sub trim ($) {
    my $s = shift;
    return undef if !defined $s;
    $s =~ s/^\s+|\s+$//g;
    $s =~ s/\n/ /gs;
    $s =~ s/\s{2,}/ /gs;
    return $s;
}

sub fmt_str ($) {
    my $str = shift;
    chomp $str;
    $str =~ s/"/\\"/g;
    $str =~ s/\r/\\r/g;
    $str =~ s/\n/\\n/g;
    return $str;
}

sub _printable {
    my $s = shift;
    $s =~ s/([\x00-\x08\x0b-\x1f\x7f-\xff])/sprintf('\\x%02x', ord $1)/ge;
    return $s;
}

sub _diff_text {
    my ($got, $expected) = @_;
    my $diff = eval {
        require Text::Diff;
        my ($e, $g) = (_printable($expected), _printable($got));
        $e .= "\n" if $e !~ /\n\z/;
        $g .= "\n" if $g !~ /\n\z/;
        Text::Diff::diff(\$e, \$g, { STYLE => 'Unified',
                                     FILENAME_A => 'expected',
                                     FILENAME_B => 'got' });
    };
    return $diff;
}

# String equality with a readable diff on failure (the real module uses
# Test::LongString::is_string here unless no_long_string() was called).
sub _is_string {
    my ($got, $expected, $desc) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    if (defined $got && defined $expected && $got ne $expected) {
        my $ok = Test::More::ok(0, $desc);
        my $diff = _diff_text($got, $expected);
        if (defined $diff && length $diff) {
            Test::More::diag("response differs (got length " . length($got)
                             . ", expected length " . length($expected)
                             . "):\n$diff");
        } else {
            Test::More::diag("     got: '" . _printable($got) . "'\n"
                             . "expected: '" . _printable($expected) . "'");
        }
        return $ok;
    }
    return Test::More::is($got, $expected, $desc);
}

sub is_str (@) {
    my ($got, $expected, $desc) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    if (ref $expected && ref $expected eq 'Regexp') {
        return Test::More::like($got, $expected, $desc);
    }
    return Test::More::is($got, $expected, $desc) if $NoLongString;
    return _is_string($got, $expected, $desc);
}

# A daemonized nginx is reparented to PID 1; an exited one may stay a zombie
# until PID 1 reaps it, so zombies count as not running.
sub is_running ($) {
    my $pid = shift;
    return 0 if !$pid;
    my $alive = kill(0, $pid) ? 1 : ($! == Errno::EPERM() ? 1 : 0);
    return 0 if !$alive;
    if (open my $in, '<', "/proc/$pid/stat") {
        my $stat = <$in> // '';
        close $in;
        return 0 if $stat =~ /^\d+ \(.*\) [ZX] /s;
    }
    return 1;
}

sub gen_rand_port {
    my ($tries, $used) = @_;
    for (1 .. $tries) {
        my $port = int(rand 63547) + 1988;
        next if $used->{$port};
        my $sock = IO::Socket::INET->new(LocalAddr => $ServerAddr,
                                         LocalPort => $port, Proto => 'tcp',
                                         Listen => 5, Reuse => 1);
        if ($sock) {
            close $sock;
            return $port;
        }
    }
    return undef;
}

sub expand_env_in_text ($$$) {
    my ($text, $name, $rand_ports) = @_;
    return undef if !defined $text;
    $rand_ports //= {};
    my %used = ($ServerPort => 1, map { $_ => 1 } values %$rand_ports);
    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        my $var = $1;
        my $val;
        if ($var =~ /^TEST_NGINX_RAND_PORT_[0-9]+$/) {
            if (!defined $rand_ports->{$var}) {
                my $p = gen_rand_port(1000, \%used)
                    // bail_out("$name - Cannot find an available listening "
                                . "port number for $var.\n");
                $rand_ports->{$var} = $p;
                $used{$p} = 1;
            }
            $val = $rand_ports->{$var};
        } else {
            bail_out("$name - No environment $var defined.\n")
                if !defined $ENV{$var};
            $val = $ENV{$var};
        }
        $val;
    }eg;
    return $text;
}

sub parse_headers ($) {
    my $s = shift;
    my %headers;
    for my $line (split /\n/, $s) {
        $line =~ s/^\s+|\s+$//g;
        next if $line eq '';
        if ($line =~ s/^!\s*//) {
            $headers{$line} = undef;
        } else {
            my ($key, $val) = split /\s*:\s*/, $line, 2;
            $headers{$key} = $val;
        }
    }
    return \%headers;
}

sub get_canon_version (@) {
    sprintf "%d.%03d%03d", $_[0], $_[1], $_[2];
}

sub _nginx_V {
    return $NginxV if defined $NginxV;
    my $out = `$NginxBinary -V 2>&1`;
    if (!defined $out || $? != 0) {
        $out //= '';
        bail_out("Failed to get the version of the Nginx binary "
                 . "\"$NginxBinary\" (TEST_NGINX_BINARY): $out");
    }
    return $NginxV = $out;
}

sub get_nginx_version () {
    my $out = _nginx_V();
    if ($out =~ m{(?:nginx|openresty)[^/]*/(\d+)\.(\d+)\.(\d+)}s
        || $out =~ m{\w+/(\d+)\.(\d+)\.(\d+)}s)
    {
        $NginxRawVersion = "$1.$2.$3";
        return get_canon_version($1, $2, $3);
    }
    bail_out("Failed to parse the output of \"nginx -V\": $out\n");
}

sub can_run {
    my $cmd = shift;
    if ($cmd =~ m{/}) {
        return (-f $cmd && -x $cmd) ? $cmd : undef;
    }
    for my $dir (split(/:/, $ENV{PATH} // ''), '.') {
        next if $dir eq '';
        my $abs = File::Spec->catfile($dir, $cmd);
        return $abs if -f $abs && -x $abs;
    }
    return undef;
}

sub get_pid_from_pidfile {
    open my $in, '<', $PidFile or return undef;
    my $pid = do { local $/; <$in> };
    close $in;
    return undef if !defined $pid;
    $pid =~ s/\s+//g;
    return $pid =~ /^\d+$/ ? $pid : undef;
}

sub _tail_file {
    my ($file, $n) = @_;
    open my $in, '<', $file or return '';
    my @lines = <$in>;
    close $in;
    @lines = @lines[-$n .. -1] if @lines > $n;
    return join '', @lines;
}

# ---------------------------------------------------------------------------
# nginx process management
# ---------------------------------------------------------------------------

# Stop an nginx (daemonized, so not our child): QUIT (or TERM), wait for it
# and its pid file to go away, then TERM, then KILL its process group.
sub kill_process ($$$) {
    my ($pid, $wait, $name) = @_;
    return if !$pid;

    if ($wait) {
        kill($ENV{TEST_NGINX_FAST_SHUTDOWN} ? SIGTERM : SIGQUIT, $pid);
        my $left = timeout();
        while ($left > 0 && is_running($pid)) {
            waitpid($pid, WNOHANG);
            sleep 0.02;
            $left -= 0.02;
        }
    }

    for my $i (1 .. 20) {
        waitpid($pid, WNOHANG);
        last if !is_running($pid);
        warn "$name - WARNING: nginx process $pid did not exit; sending TERM\n"
            if $i == 1 && $wait;
        kill(SIGTERM, $pid);
        sleep 0.05;
    }

    if (is_running($pid)) {
        warn "$name - WARNING: killing the nginx process $pid with force...\n";
        my $pgrp = getpgrp($pid);
        if (defined $pgrp && $pgrp == $pid) {
            kill(SIGKILL, -$pid);
        } else {
            kill(SIGKILL, $pid);
        }
        for (1 .. 100) {
            waitpid($pid, WNOHANG);
            last if !is_running($pid);
            sleep 0.02;
        }
    }

    # nginx removes its pid file on a clean exit; wait briefly for that.
    for (1 .. 50) {
        last if !-f $PidFile;
        my $p = get_pid_from_pidfile();
        last if !defined $p || $p != $pid;
        if (!is_running($pid)) {
            unlink $PidFile;
            last;
        }
        sleep 0.02;
    }
}

sub _stop_running_nginx {
    my $name = shift;
    if (-f $PidFile) {
        my $pid = get_pid_from_pidfile();
        if ($pid && is_running($pid)) {
            kill_process($pid, 1, $name);
        }
        unlink $PidFile if -f $PidFile;
    }
    _check_valgrind($name) if $UseValgrind;
}

# Reads (and removes) the valgrind reports of the nginx that just stopped:
# every error record in a stack through the module under test fails the
# block; others are shown as notes.
sub _check_valgrind {
    my $name = shift;
    # workers may still be writing their last lines
    sleep 0.2;
    my (@mine, @other);
    for my $file (glob "$LogDir/valgrind.*") {
        open my $in, '<', $file or next;
        my $text = do { local $/; <$in> };
        close $in;
        unlink $file;
        $text =~ s/^==\d+== ?//mg;
        # records are separated by blank lines; suppression templates start with "{"
        for my $record (split /\n\s*\n/, $text) {
            next if $record !~ /\S/ || $record =~ /^\s*\{/;
            if ($record =~ /$ValgrindModule/) { push @mine, $record } else { push @other, $record }
        }
    }
    $ValgrindErrors += @mine;
    if (@mine) {
        Test::More::fail("$name - valgrind: " . scalar(@mine) . " error(s) in the module");
        Test::More::diag($_) for @mine;
    }
    Test::More::diag("$name - valgrind (outside the module):\n$_") for @other;
}

sub cleanup () {
    for my $hdl (@CleanupHandlers) {
        $hdl->();
    }
}

sub cleanup_test ($) {
    my $block = shift;
    for my $hdl (@TestCleanupHandlers) {
        $hdl->($block);
    }
}

# Make sure END (which stops nginx) also runs when we are interrupted.
for my $sig (qw(INT TERM)) {
    $SIG{$sig} = sub {
        return if $$ != $MainPid;
        warn "Test::Nginx::Socket (fallback): caught SIG$sig, stopping nginx\n";
        exit 130;
    } if !$SIG{$sig} || $SIG{$sig} eq 'DEFAULT';
}

END {
    if (defined $MainPid && $$ == $MainPid) {
        local $?;    # keep Test::Builder's exit code
        cleanup();
        if (!$ENV{TEST_NGINX_NO_CLEAN}) {
            _stop_running_nginx('END');
        }
        if ($Randomize && defined $ServRoot && -d $ServRoot
            && $ServRoot =~ m{/t/servroot_\d+$})
        {
            remove_tree($ServRoot);
        }
    }
}

sub setup_server_root ($) {
    my $first_time = shift;

    if (-d $ServRoot) {
        # Only remove what we create, so a mis-pointed TEST_NGINX_SERVROOT
        # cannot wipe real data (same policy as the real module).
        remove_tree($ConfDir, glob("$ServRoot/*_cache"), glob("$ServRoot/*_temp"));
        if ($UseHup) {
            find({ bydepth => 1, no_chdir => 1, wanted => sub {
                return if -d $_;
                if (/(?:\bnginx\.pid|\.sock|\.crt|\.key)$/) {
                    return unless $first_time;
                }
                unlink $_ or warn "Failed to remove $_\n";
            } }, $ServRoot);
        } else {
            unlink $StderrFile;
            remove_tree($CacheDir, $HtmlDir, $LogDir);
            rmdir $ServRoot
                or bail_out("Can't remove $ServRoot (not empty?): $!");
        }
    }

    for my $d ($ServRoot, $LogDir, $HtmlDir) {
        next if -d $d;
        mkdir $d or bail_out("Failed to do mkdir $d: $!\n");
    }

    my $index = "$HtmlDir/index.html";
    open my $out, '>', $index or bail_out("Can't open $index for writing: $!\n");
    print $out '<html><head><title>It works!</title></head>'
               . '<body>It works!</body></html>';
    close $out;

    mkdir $ConfDir or bail_out("Failed to do mkdir $ConfDir: $!\n");
}

sub run_customer_init_script ($) {
    my $block = shift;
    my $name = $block->name;
    if ($block->post_setup_server_root) {
        eval $block->post_setup_server_root;
        bail_out("$name - post_setup_server_root failed: $@") if $@;
    }
}

sub write_user_files ($$) {
    my ($block, $rand_ports) = @_;
    my $name = $block->name;
    my $files = $block->user_files;
    return if !$files;

    if (!ref $files) {
        my @list;
        my ($fname, $body, $date);
        for my $line (split /^/, $files) {
            if ($line =~ />>> (\S+)(?:\s+(.+))?/) {
                push @list, [$fname, $body, $date] if $fname;
                ($fname, $date, $body) = ($1, $2, undef);
            } else {
                $body .= $line;
            }
        }
        push @list, [$fname, $body, $date] if $fname;
        $files = \@list;
    } elsif (ref $files ne 'ARRAY') {
        bail_out("$name - wrong value type: ", ref $files,
                 ", only scalar or ARRAY are accepted");
    }

    for my $file (@$files) {
        my ($fname, $body, $date) = @$file;
        $body //= '';
        my $path = $fname =~ m{^/} ? $fname : "$HtmlDir/$fname";
        if ($path =~ m{(.*)/} && !-d $1) {
            make_path($1) or bail_out("$name - Cannot create directory $1");
        }
        $body = expand_env_in_text($body, $name, $rand_ports);
        open my $out, '>', $path
            or bail_out("$name - Cannot open $path for writing: $!\n");
        binmode $out;
        print $out $body;
        close $out;
        if ($date) {
            system('touch', '-t', $date, $path) == 0
                or bail_out("$name - Failed to set the mtime of $path\n");
        }
    }
}

sub write_config_file ($$$) {
    my ($block, $config, $rand_ports) = @_;
    my $name = $block->name;

    master_on() if $UseHup;    # reloading needs a master process

    my $http_config      = expand_env_in_text($block->http_config, $name, $rand_ports) // '';
    my $main_config      = $block->main_config // '';
    my $post_main_config = expand_env_in_text($block->post_main_config, $name, $rand_ports) // '';
    my $err_log_file     = $block->error_log_file || $ErrLogFile;
    my $server_name      = $block->server_name // $ServerName;
    $config //= '';

    $http_config = $FilterHttpConfig->($http_config) if $FilterHttpConfig;

    my $postpone = $PostponeOutput;
    undef $postpone if $http_config =~ /\bpostpone_output\b/;
    my $extra_http_config = '';
    if (defined $postpone) {
        bail_out("Bad TEST_NGINX_POSTPONE_OUTPUT value: $postpone\n")
            if $postpone !~ /^\d+$/;
        $extra_http_config = "\n    postpone_output $postpone;\n";
    }

    if ($LoadModules) {
        my @mods = map { "load_module $_;" } grep { $_ } split /\s+/, $LoadModules;
        $main_config = join ' ', @mods, $main_config if @mods;
    }
    $main_config  = expand_env_in_text($main_config, $name, $rand_ports);
    $err_log_file = expand_env_in_text($err_log_file, $name, $rand_ports);

    my $listen_opts = $ReusePort ? ' reuseport' : '';

    my $nginx_V = _nginx_V();
    my %temp = map { $_ => "${_}_temp_path $ServRoot/${_}_temp;" }
               qw(client_body proxy fastcgi scgi uwsgi);
    for my $m (qw(fastcgi scgi uwsgi)) {
        $temp{$m} = '' if $nginx_V =~ /--without-http_${m}_module/;
    }
    for my $m (qw(proxy client_body)) {
        $temp{$m} = '' if $http_config =~ /\b${m}_temp_path\b/;
    }
    my $temp_paths = join ' ', @temp{qw(client_body proxy fastcgi scgi uwsgi)};

    my $env_lines = '';
    for my $v (@EnvToNginx) {
        my $q = $v =~ /\s/ ? "'$v'" : $v;
        $env_lines .= "env $q;\n";
    }

    my $root_location = $NoRootLocation ? '' : <<_EOC_;
        location / {
            root $HtmlDir;
            index index.html index.htm;
        }
_EOC_

    my $hup_server = !$UseHup ? '' : <<_EOC_;
    server {
        listen          $ServerPort$listen_opts;
        server_name     'Test-Nginx';

        location = /ver {
            return 200 '$ConfigVersion';
        }
    }
_EOC_

    my $events_use = $EventType ? "    use $EventType;\n" : '';
    my $user = defined $WorkerUser ? "user $WorkerUser;\n"
             : $> == 0            ? "user root;\n"
             : '';

    open my $out, '>', $ConfFile or bail_out("Can't open $ConfFile for writing: $!\n");
    print $out <<_EOC_;
worker_processes  $Workers;
daemon $DaemonEnabled;
master_process $MasterProcessEnabled;
error_log $err_log_file $LogLevel;
pid       $PidFile;
env MOCKEAGAIN_VERBOSE;
env MOCKEAGAIN;
env MOCKEAGAIN_WRITE_TIMEOUT_PATTERN;
env LD_PRELOAD;
env LD_LIBRARY_PATH;
env DYLD_INSERT_LIBRARIES;
env DYLD_FORCE_FLAT_NAMESPACE;
$env_lines
$main_config

http {
    access_log $AccLogFile; $temp_paths

    default_type text/plain;
    keepalive_timeout  68000ms;

$http_config
    server {
        listen          $ServerPort$listen_opts;
        server_name     '$server_name';
        client_max_body_size 30M;

        # Begin preamble config...
$ConfigPreamble
        # End preamble config...

        # Begin test case config...
$config
        # End test case config.

$root_location    }
$hup_server$extra_http_config
}

$post_main_config

events {
    accept_mutex off;

    worker_connections  $WorkerConnections;
$events_use}
env ASAN_OPTIONS;
$user
_EOC_
    close $out;
}

# Is something listening on our port? Uses /proc/net/tcp* when available so
# that no connection shows up in nginx's logs; else tries to connect.
sub _port_listening {
    my $found_proc;
    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $in, '<', $f or next;
        $found_proc = 1;
        while (my $line = <$in>) {
            # sl local_address rem_address st ...; st 0A = LISTEN
            if ($line =~ /^\s*\d+:\s+[0-9A-Fa-f]+:([0-9A-Fa-f]+)\s+[0-9A-Fa-f]+:[0-9A-Fa-f]+\s+0A\b/
                && hex($1) == $ServerPort)
            {
                close $in;
                return 1;
            }
        }
        close $in;
    }
    return $found_proc ? 0 : _can_connect();
}

sub _can_connect {
    my $sock = IO::Socket::INET->new(PeerAddr => $ServerAddr,
                                     PeerPort => $ServerPortForClient,
                                     Proto => 'tcp', Timeout => 0.5);
    return 0 if !$sock;
    close $sock;
    return 1;
}

# Run "nginx -p ... -c ..." once. Returns ($status, $exec_failed).
sub _exec_nginx {
    my ($block) = @_;
    my @cmd = ($NginxBinary, '-p', "$ServRoot/", '-c', $ConfFile);
    # "-e" (startup error log) exists since nginx 1.19.5
    push @cmd, '-e', $ErrLogFile if $NginxVersion >= 1.019005;
    if ($UseValgrind) {
        my ($supp) = grep { -f } 'valgrind.suppress', 't/valgrind.suppress';
        unshift @cmd, 'valgrind', '-q', '--tool=memcheck', '--num-callers=100', '--gen-suppressions=all',
            "--log-file=$LogDir/valgrind.%p",
            ($UseValgrind eq 'full' ? ('--leak-check=full', '--show-possibly-lost=no') : ('--leak-check=no')),
            ($supp ? "--suppressions=$supp" : ());
    }
    _vlog("starting: @cmd\n");

    my $pid = fork();
    bail_out("fork() failed: $!") if !defined $pid;
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', '/dev/null';
        open STDERR, '>>', $StderrFile;
        if (defined $ENV{TEST_NGINX_LD_PRELOAD}) {
            $ENV{LD_PRELOAD} = join ' ', grep { defined && length }
                               $ENV{TEST_NGINX_LD_PRELOAD}, $ENV{LD_PRELOAD};
        }
        { exec { $cmd[0] } @cmd; }
        print STDERR "test-nginx-fallback: exec $cmd[0] failed: $!\n";
        POSIX::_exit(127);
    }
    waitpid($pid, 0);
    my $status = $?;
    my $exec_failed = ($status >> 8) == 127
        && grep { /^test-nginx-fallback: exec / } @{ _read_stderr_file() };
    return ($status, $exec_failed);
}

sub _read_stderr_file {
    open my $in, '<', $StderrFile or return [];
    my @lines = <$in>;
    close $in;
    return \@lines;
}

# Start nginx from scratch for $block. Returns 1 when nginx is up and
# accepting connections, 0 when the block's tests should not run.
sub _start_nginx {
    my ($block, $config, $rand_ports, $must_die, $first_time) = @_;
    my $name = $block->name;

    _stop_running_nginx($name);

    setup_server_root($first_time);
    run_customer_init_script($block);
    write_user_files($block, $rand_ports);
    write_config_file($block, $config, $rand_ports);

    if (!can_run($NginxBinary)) {
        bail_out("$name - Cannot find the nginx executable \"$NginxBinary\" "
                 . "(set TEST_NGINX_BINARY or PATH)");
    }

    if (defined $must_die) {
        $ErrLogFilePos = 0;
        for my $i (0 .. $RepeatEach - 1) {
            unlink $StderrFile;
            my ($status, $exec_failed) = _exec_nginx($block);
            my $exit_code = $status >> 8;
            my $coredump = $status & 128;
            if ($exec_failed) {
                Test::More::fail("$name - failed to execute the nginx command line");
            } elsif ($coredump) {
                Test::More::fail("$name - nginx core dumped");
            } elsif (looks_like_number($must_die)) {
                Test::More::is($must_die, $exit_code,
                               "$name - die with the expected exit code");
            } else {
                Test::More::isnt($status, 0, "$name - die as expected");
            }

            my $stderr = _read_stderr_file();
            if ($Verbose || ($status != 0 && !defined $block->suppress_stderr
                             && $ENV{TEST_NGINX_SHOW_MUST_DIE_STDERR}))
            {
                print STDERR "# nginx: $_" for @$stderr;
            }

            check_error_log($block, undef, $i, 0, $stderr);

            if ($status == 0) {
                warn "WARNING: $name - nginx must die but it does not; "
                     . "killing it (req $i)\n";
                for (1 .. 15) {
                    last if -f $PidFile;
                    sleep $TestNginxSleep;
                }
                _stop_running_nginx($name);
            }
        }
        return 0;
    }

    my ($status, $exec_failed);
    my $deadline = time() + $StartupTimeout;
    my $tries = 0;
    while (1) {
        unlink $StderrFile;
        ($status, $exec_failed) = _exec_nginx($block);
        last if $status == 0 || $exec_failed;
        last if time() >= $deadline;
        # only a busy port is worth waiting for; config errors are final
        last if !grep { /Address already in use|bind\(\) to .* failed/ }
                      @{ _read_stderr_file() };
        # e.g. the port is still held by a previous instance: retry
        $tries++;
        sleep min(0.1 * $tries, 0.5);
    }

    if ($status == 0) {
        # nginx daemonizes after binding its listening sockets; still make
        # sure it is really up before sending requests.
        my $up = sub {
            my $pid = get_pid_from_pidfile();
            return $pid && is_running($pid) && _port_listening();
        };
        while (time() < $deadline + 1) {
            last if $up->();
            sleep 0.02;
        }
        return 1 if $up->();
        _nginx_start_failure($name, "nginx started but does not accept "
                             . "connections on $ServerAddr:$ServerPortForClient");
        return 0;
    }

    _nginx_start_failure($name, $exec_failed
        ? "failed to execute $NginxBinary"
        : "nginx failed to start (exit code " . ($status >> 8) . ")");
    return 0;
}

sub _nginx_start_failure {
    my ($name, $why) = @_;
    Test::More::fail("$name - $why");
    my $stderr = join '', @{ _read_stderr_file() };
    my $log = _tail_file($ErrLogFile, 20);
    Test::More::diag("nginx stderr:\n$stderr") if length $stderr;
    Test::More::diag("tail of $ErrLogFile:\n$log") if length $log;
    Test::More::diag("config: $ConfFile");
}

# HUP-reload the running nginx (use_hup() / TEST_NGINX_USE_HUP mode).
sub _reload_nginx {
    my ($block, $config, $rand_ports, $pid, $first_time) = @_;
    my $name = $block->name;

    setup_server_root($first_time);
    run_customer_init_script($block);
    write_user_files($block, $rand_ports);
    write_config_file($block, $config, $rand_ports);

    kill(SIGUSR1, $pid) or return 0;    # reopen the (removed) log files
    sleep $TestNginxSleep;
    kill(SIGHUP, $pid) or return 0;
    sleep $TestNginxSleep * 3;

    if (defined $block->reload_fails) {
        sleep 0.3;
    } else {
        test_config_version($name, $block);
    }
    return 1;
}

sub test_config_version ($$) {
    my ($name, $block) = @_;
    my $nsucc = 0;
    my $sleep = sleep_time();
    my $total = 200;
    for my $try (1 .. $total) {
        my ($raw) = _http_exchange(
            "GET /ver HTTP/1.1\r\nHost: Test-Nginx\r\nConnection: close\r\n\r\n", 2);
        my $ver = '';
        if (defined $raw && $raw =~ /\r\n\r\n(.*)\z/s) {
            $ver = $1;
        }
        if ($ver eq $ConfigVersion) {
            $nsucc++;
            sleep $sleep if $nsucc == 5;
            return if $nsucc >= 20;
            next;
        }
        $nsucc = 0;
        my $wait = ($sleep + $sleep * $try) * $try / 2;
        $wait = 1 if $wait > 1;
        sleep $wait;
    }
    _no_ending();
    Test::More::fail("$name - failed to reload configuration after $total "
                     . "failed test requests");
}

# Simple blocking exchange used for the /ver probe only.
sub _http_exchange {
    my ($req, $timeout) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => $ServerAddr,
                                     PeerPort => $ServerPortForClient,
                                     Proto => 'tcp', Timeout => $timeout)
        or return undef;
    $sock->autoflush(1);
    print $sock $req;
    my $resp = '';
    my $sel = IO::Select->new($sock);
    while ($sel->can_read($timeout)) {
        my $n = sysread($sock, my $buf, 4096);
        last if !$n;
        $resp .= $buf;
    }
    close $sock;
    return $resp;
}

# ---------------------------------------------------------------------------
# Test driver
# ---------------------------------------------------------------------------

sub run_tests () {
    $NginxVersion = get_nginx_version();

    $ENV{TEST_NGINX_SERVER_PORT} = $ServerPort
        if !defined $ENV{TEST_NGINX_SERVER_PORT};
    # Extension: the real module expects the user to set this one.
    $ENV{TEST_NGINX_HTML_DIR} = $HtmlDir
        if !defined $ENV{TEST_NGINX_HTML_DIR};

    for my $block ($NoShuffle ? Test::Base::blocks() : shuffle Test::Base::blocks()) {
        for my $hdl (@BlockPreprocessors) {
            $hdl->($block);
        }
        $block->set_value("name", $0 . " " . $block->name);
        run_test($block);
        cleanup_test($block);
    }

    cleanup();
}

sub _skip_spec {
    my ($block, $name) = @_;
    my ($tests_to_skip, $should_skip, $skip_reason);

    if (defined(my $spec = $block->skip_eval)) {
        if ($spec =~ /^\s*(\d+)\s*:\s*(.*)/s) {
            $tests_to_skip = $1;
            $skip_reason = "skip_eval";
            my $code = $2;
            $should_skip = eval $code;
            bail_out("$name - skip_eval - failed to eval the Perl code "
                     . "\"$code\": $@") if $@;
        }
    }

    if (defined(my $spec = $block->skip_nginx)) {
        if ($spec =~ /^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)(?:\s*:\s*(.*))?\s*$/) {
            $tests_to_skip = $1;
            my ($op, $ver) = ($2, get_canon_version($3, $4, $5));
            $skip_reason = $6 || "nginx version $op $3.$4.$5";
            $should_skip = 1 if eval "$NginxVersion $op $ver";
        } else {
            bail_out("$name - Invalid --- skip_nginx spec: $spec");
        }
    }

    my ($should_todo, $todo_reason);
    if (defined(my $spec = $block->todo)) {
        if ($spec =~ /^\s*(\d+)\s*:\s*(.*)/s) {
            ($should_todo, $tests_to_skip, $todo_reason) = (1, $1, $2);
        } else {
            bail_out("$name - Invalid --- todo spec: $spec");
        }
    }

    return ($tests_to_skip, $should_skip, $skip_reason || "various reasons",
            $should_todo, $todo_reason || "various reasons");
}

sub run_test ($) {
    my $block = shift;
    return if defined $block->SKIP;

    my $name = $block->name;

    my $first_time = $FirstTime;
    undef $FirstTime;

    my $rand_ports = {};
    $RandPorts = $rand_ports;

    my $config = expand_env_in_text($block->config, $name, $rand_ports);

    local $LogLevel = $LogLevel;
    $LogLevel = $block->log_level if $block->log_level;

    my $must_die;
    local $UseHup = $UseHup;
    if (defined $block->must_die) {
        $must_die = $block->must_die;
        undef $UseHup;
    }

    my $should_restart = 1;
    if (!defined $config) {
        # No config: keep talking to the nginx of the previous block
        # (the real module does not restart it either).
        if (!$NoNginxManager && !defined $PrevConfig) {
            bail_out("$name - No '--- config' section specified and could "
                     . "not get previous one. Use TEST_NGINX_NO_NGINX_MANAGER ?");
        }
        $should_restart = 0;
    } elsif ($NoNginxManager) {
        Test::More::diag("NO_NGINX_MANAGER activated: config for $name ignored");
        $should_restart = 0;
    } else {
        $should_restart = ($ForceRestartOnTest || !defined $PrevConfig
                           || $config ne $PrevConfig) ? 1 : 0;
    }

    my ($tests_to_skip, $should_skip, $skip_reason, $should_todo, $todo_reason)
        = _skip_spec($block, $name);

    if (!$NoNginxManager && !$should_skip && $should_restart) {
        $PrevConfig = $config;

        my $reloaded;
        if ($UseHup) {
            $ConfigVersion = join '', map { ('A'..'Z', 'a'..'z', 0..9)[rand 62] } 1 .. 10;
            my $pid = get_pid_from_pidfile();
            if (!$first_time && $pid && is_running($pid)) {
                $reloaded = _reload_nginx($block, $config, $rand_ports, $pid, $first_time);
            }
        }

        if (!$reloaded) {
            my $ok = _start_nginx($block, $config, $rand_ports, $must_die, $first_time);
            return if defined $must_die;
            return if !$ok;
        }
        sleep $TestNginxSleep;
    }

    if ($block->init) {
        my $err = Test::Nginx::Util::_eval_init($block->init);
        bail_out("$name - init failed: $err") if $err;
    }

    $ErrLogFilePos = 0;
    for my $i (1 .. $RepeatEach) {
        write_user_files($block, $rand_ports) if $i > 1;

        if ($should_skip && defined $tests_to_skip) {
            SKIP: {
                Test::More::skip("$name - $skip_reason", $tests_to_skip);
                run_test_helper($block, $i - 1);
            }
        } elsif ($should_todo) {
            TODO: {
                Test::More::todo_skip("$name - $todo_reason", $tests_to_skip);
                run_test_helper($block, $i - 1);
            }
        } else {
            run_test_helper($block, $i - 1);
        }
    }
}

sub run_test_helper ($$) {
    my ($block, $repeated_req_idx) = @_;
    my $name = $block->name;

    my $reqs = get_req_from_block($block);
    bail_out("$name - request empty") if !@$reqs;

    my $timeout = parse_time(scalar $block->timeout) // timeout();

    my ($res, $n, $need_array);
    my $req_idx = 0;

    for my $one_req (@$reqs) {
        my ($raw_resp, $head_req) = send_request($one_req,
                                                 scalar($block->raw_request_middle_delay),
                                                 $timeout, $block);

        if ($block->pipelined_requests) {
            $n = @{ $block->pipelined_requests };
            $need_array = 1;
        } else {
            $need_array = @$reqs > 1;
        }

        while (1) {
            $raw_resp //= '';
            my ($raw_headers, $left);
            if (!defined $block->ignore_response) {
                ($res, $raw_headers, $left) = parse_response($name, $raw_resp, $head_req);
            }

            if (!$n) {
                if (defined $left && length $left) {
                    (my $l = $left) =~ s/([\0-\037\200-\377])/sprintf('\x{%02x}', ord $1)/eg;
                    warn "WARNING: $name - unexpected extra bytes after last chunk in "
                         . "response: \"$l\"\n";
                }
            } else {
                $raw_resp = $left;
                $n--;
            }

            if (!defined $block->ignore_response) {
                check_error_code($block, $res, $req_idx, $need_array);
                check_raw_response_headers($block, $raw_headers, $req_idx, $need_array);
                check_response_headers($block, $res, $raw_headers, $req_idx, $need_array);
                transform_response_body($block, $res, $req_idx);
                check_response_body($block, $res, $req_idx, $repeated_req_idx, $need_array);
            }

            if ($n || $req_idx < @$reqs - 1) {
                sleep($block->wait) if $block->wait;
                check_error_log($block, $res, $repeated_req_idx, $need_array);
                check_access_log($block, $repeated_req_idx)
                    if !defined $block->ignore_response;
            }

            $req_idx++;
            last if !$n;
        }
    }

    sleep($block->wait) if $block->wait;

    check_error_log($block, $res, $repeated_req_idx, $need_array);
    check_access_log($block, $repeated_req_idx) if !defined $block->ignore_response;
}

# ---------------------------------------------------------------------------
# Building requests
# ---------------------------------------------------------------------------

sub parse_more_headers ($) {
    my $in = shift;
    my ($out, $is_chunked) = ('', undef);
    for my $header (split /\n+/, $in) {
        next if $header =~ /^\s*#/;
        my ($key, $val) = split /:\s*/, $header, 2;
        $val //= '';
        $is_chunked = 1 if lc($key) eq 'transfer-encoding' && $val eq 'chunked';
        $out .= "$key: $val\r\n";
    }
    return ($out, $is_chunked);
}

# Turn "METH [URI [VERSION]]\n[body]" (possibly split into packets) into a
# full HTTP request: normalized request line, Host/Connection headers (unless
# given in more_headers), more_headers, and Content-Length for a non-empty
# body (whose surrounding whitespace is then trimmed, like the real module).
# Returns the request split at the same places as the input packets.
sub build_request ($$$$$) {
    my ($name, $more_headers, $is_chunked, $conn, $packets) = @_;

    my $src = join '', @$packets;
    my ($first, $content) = $src =~ /\A([^\n]*\n?)(.*)\z/s;
    bail_out("$name - Request line should be non-empty") if !length $first;

    my @m = $first =~ /^(\s*)(\S+)( *)(?:(\S+)( *))?(?:(\S+)( *))?(\s*)$/s
        or bail_out("$name - Request line is not valid. Should be "
                    . "'meth [url [version]]' but got \"$first\".");
    my ($ws, $meth, $sp1, $url, $sp2, $ver, $sp3, $end) = @m;
    $_ //= '' for $sp2, $sp3;

    my $len_header = '';
    my ($lead_cut, $body) = (0, $content);
    if (!$is_chunked && $content ne ''
        && $more_headers !~ /(?:^|\n)Content-Length:/)
    {
        ($lead_cut) = map { length } $body =~ /\A(\s*)/;
        $body =~ s/^\s+|\s+$//gs;
        $len_header = "Content-Length: " . length($body) . "\r\n";
    }

    $more_headers =~ s/(?<!\r)\n/\r\n/gs;
    my $headers = '';
    $headers .= "Host: $ServerName\r\n" if $more_headers !~ /(?:^|\n)Host:/msi;
    $headers .= "Connection: $conn\r\n" if $more_headers !~ /(?:^|\n)Connection/msi;
    $headers .= "$more_headers$len_header\r\n";

    # pieces of the source request line => their replacement
    # [source length, output text, maps 1:1?]
    my @pieces = (
        [length $ws, '', 0],
        [length $meth, "$meth", 1],
        [length $sp1, ' ', 0],
        [length($url // ''), $url // '/', defined $url],
        [length $sp2, ' ', 0],
        [length($ver // ''), $ver // 'HTTP/1.1', defined $ver],
        [length($sp3) + length($end), "\r\n$headers", 0],
    );
    my $out = join '', map { $_->[1] } @pieces;
    my $prefix_len = length $out;
    $out .= $body;

    return [$out] if @$packets <= 1;

    # map a source offset to an output offset
    my $map = sub {
        my $x = shift;
        my ($src_pos, $out_pos) = (0, 0);
        for my $p (@pieces) {
            my ($slen, $text, $same) = @$p;
            if ($x < $src_pos + $slen) {
                my $dx = $x - $src_pos;
                return $out_pos + ($same ? $dx : ($dx ? length $text : 0));
            }
            $src_pos += $slen;
            $out_pos += length $text;
        }
        my $c = $x - length($first) - $lead_cut;
        $c = 0 if $c < 0;
        $c = length $body if $c > length $body;
        return $prefix_len + $c;
    };

    my @result;
    my ($src_off, $prev) = (0, 0);
    for my $i (0 .. $#$packets - 1) {
        $src_off += length $packets->[$i];
        my $o = $map->($src_off);
        $o = $prev if $o < $prev;
        push @result, substr($out, $prev, $o - $prev);
        $prev = $o;
    }
    push @result, substr($out, $prev);
    return \@result;
}

# Returns a list of requests; each request is a list of packets
# ({ value => bytes, delay_before => secs }).
sub get_req_from_block ($) {
    my $block = shift;
    my $name = $block->name;
    my @req_list;

    if (defined(my $raw = $block->raw_request)) {
        if (ref $raw && ref $raw eq 'ARRAY') {
            push @req_list, [map { ref $_ ? $_ : { value => $_ } } @$raw];
        } else {
            push @req_list, [{ value => $raw }];
        }
        return \@req_list;
    }

    my $request;
    if (defined $block->request_eval) {
        Test::More::diag("$name - request_eval DEPRECATED. Use request eval instead.");
        $request = eval $block->request_eval;
        warn $@ if $@;
    } else {
        $request = $block->request;
        if (defined $request && !ref $request) {
            while ($request =~ s/^\s*\#[^\n]+\s+|^\s+//gs) { }
        }
    }

    my $more_headers = $block->more_headers || '';
    my $hdr_for = sub {
        my $i = shift;
        if (ref $more_headers eq 'ARRAY') {
            my $h = $more_headers->[$i];
            bail_out("--- more_headers lacks data for the ${i}th request")
                if !defined $h;
            return parse_more_headers($h);
        }
        return parse_more_headers($more_headers);
    };

    if (my $reqs = $block->pipelined_requests) {
        bail_out("$name - invalid entries in --- pipelined_requests")
            if ref $reqs ne 'ARRAY';
        my $all = '';
        for my $i (0 .. $#$reqs) {
            my $r = expand_env_in_text($reqs->[$i], $name, $RandPorts);
            my ($hdr, $chunked) = $hdr_for->($i);
            my $conn = $i == $#$reqs ? 'close' : 'keep-alive';
            $all .= build_request($name, $hdr, $chunked, $conn, [$r])->[0];
        }
        push @req_list, [{ value => $all }];
        return \@req_list;
    }

    bail_out("$name - no --- request section") if !defined $request;

    my @reqs;
    if (!ref $request) {
        @reqs = ($request);
    } elsif (ref $request eq 'ARRAY') {
        @reqs = @$request;
    } else {
        bail_out("$name - invalid ---request : MUST be string or array of requests");
    }

    for my $i (0 .. $#reqs) {
        my $one = $reqs[$i];
        my ($hdr, $chunked) = $hdr_for->(ref $request ? $i : 0);
        if (!ref $one) {
            push @req_list, [{ value => build_request($name, $hdr, $chunked,
                                                      'close', [$one])->[0] }];
        } elsif (ref $one eq 'ARRAY') {
            my @src = map {
                !ref $_ ? $_
                : ref $_ eq 'HASH' ? $_->{value}
                : bail_out("$name - Invalid syntax. $_ should be a string or hash with value.")
            } @$one;
            my $built = build_request($name, $hdr, $chunked, 'close', \@src);
            my @pkts;
            for my $j (0 .. $#$built) {
                my $orig = $one->[$j];
                push @pkts, { value => $built->[$j],
                              (ref $orig ? (delay_before => $orig->{delay_before}) : ()) };
            }
            push @req_list, \@pkts;
        } else {
            bail_out("$name - Invalid syntax. $one should be a string or an array of packets.");
        }
    }

    return \@req_list;
}

# ---------------------------------------------------------------------------
# HTTP client
# ---------------------------------------------------------------------------

# Send one request (list of packets) on a fresh connection and read until
# the server closes it. Returns ($raw_response, $is_head_request).
sub send_request ($$$$@) {
    my ($req, $middle_delay, $timeout, $block, $tries) = @_;
    my $name = $block->name;
    my @bits = @$req;

    my $head_req = (join('', map { $_->{value} } @bits) =~ /^\s*HEAD\s+/) ? 1 : 0;

    my $addr = $block->server_addr_for_client // $ServerAddr;

    my $sock;
    my $deadline = time() + $StartupTimeout;
    my $err;
    while (1) {
        $sock = IO::Socket::INET->new(PeerAddr => $addr,
                                      PeerPort => $ServerPortForClient,
                                      Proto => 'tcp', Timeout => $timeout);
        last if $sock;
        $err = $!;
        last if time() >= $deadline;
        sleep 0.05;
    }

    if (!$sock) {
        my $msg = "$name - Can't connect to $addr:$ServerPortForClient: $err (aborted)\n";
        _no_ending();
        if (++$TotalConnectingTimeouts < 3) {
            Test::More::fail($msg);
            my $log = _tail_file($ErrLogFile, 20);
            Test::More::diag("tail of $ErrLogFile:\n$log") if length $log;
        } else {
            bail_out($msg);
        }
        return (undef, $head_req);
    }

    binmode $sock;
    $sock->blocking(0);
    my $sel = IO::Select->new($sock);
    my $resp = '';
    my $timed_out;

    # write all packets
    my $first = 1;
    WRITE:
    for my $bit (@bits) {
        my $delay = $first ? undef : ($bit->{delay_before} // $middle_delay);
        $first = 0;
        sleep $delay if $delay;
        my $buf = $bit->{value} // '';
        my $off = 0;
        while ($off < length $buf) {
            if (!IO::Select->select(undef, $sel, undef, $timeout)) {
                $timed_out = 1;
                last WRITE;
            }
            my $w = syswrite($sock, $buf, length($buf) - $off, $off);
            if (!defined $w) {
                next if $! == EAGAIN || $! == EINTR;
                warn "write failed: $!\n";
                $resp = "write failed: $!" if $resp eq '';
                last WRITE;
            }
            $off += $w;
        }
    }

    if (!$timed_out) {
        if (defined(my $shutdown = $block->shutdown)) {
            $shutdown = 1 if $shutdown =~ /^$/s;
            shutdown($sock, $shutdown);
        }

        # read until EOF
        while (1) {
            if (!$sel->can_read($timeout)) {
                $timed_out = 1;
                last;
            }
            my $n = sysread($sock, my $buf, 16384);
            if (!defined $n) {
                next if $! == EAGAIN || $! == EINTR;
                warn "WARNING: $name - HTTP response read failure: $!\n";
                last;
            }
            last if $n == 0;
            $resp .= $buf;
        }
    }

    close $sock;

    if ($timed_out) {
        if (!defined $block->abort) {
            _no_ending();
            Test::More::fail("ERROR: client socket timed out - $name\n");
        } else {
            sleep 0.005;
        }
    }

    return ($resp, $head_req);
}

{
    # Minimal response object (code / header / content) so that no extra
    # modules are needed.
    package Test::Nginx::Socket::Response;

    sub new {
        my ($class, %args) = @_;
        return bless { code => $args{code}, message => $args{message},
                       headers => $args{headers} || [],
                       content => $args{content} }, $class;
    }
    sub code    { my $s = shift; $s->{code} = shift if @_; $s->{code} }
    sub message { $_[0]{message} }
    sub content { my $s = shift; $s->{content} = shift if @_; $s->{content} }
    sub headers { @{ $_[0]{headers} } }

    # Like HTTP::Headers: values of repeated headers joined by ", " in
    # scalar context, a list in list context.
    sub header {
        my ($s, $key) = @_;
        my @vals = map { $_->[1] } grep { lc $_->[0] eq lc $key } @{ $s->{headers} };
        return @vals if wantarray;
        return @vals ? join(', ', @vals) : undef;
    }
}

# Parse one response from $raw. Returns ($res, $raw_headers, $left_over).
sub parse_response ($$$) {
    my ($name, $raw, $head_req) = @_;

    my $raw_headers = $raw =~ /(.*?\r\n)\r\n/s ? $1 : '';

    my ($head, $body);
    if ($raw =~ /\A(.*?)\r?\n\r?\n(.*)\z/s) {
        ($head, $body) = ($1, $2);
    } else {
        ($head, $body) = ($raw, '');
    }

    my @lines = split /\r?\n/, $head;
    my $status = @lines ? shift @lines : '';
    my ($code, $msg);
    if ($status =~ m{^HTTP/\d+(?:\.\d+)?\s+(\d+)\s*(.*)$}) {
        ($code, $msg) = ($1, $2);
    }

    my @headers;
    for my $line (@lines) {
        if ($line =~ /^[ \t]+(.*)/ && @headers) {
            $headers[-1][1] .= " $1";
        } elsif ($line =~ /^([^:\s]+)\s*:\s*(.*?)\s*$/) {
            push @headers, [$1, $2];
        }
    }

    my $res = Test::Nginx::Socket::Response->new(code => $code, message => $msg,
                                                  headers => \@headers,
                                                  content => $body);
    my $left;

    return ($res, $raw_headers) if $code && ($code == 304 || $code == 101);

    my $enc = $res->header('Transfer-Encoding');
    my $len = $res->header('Content-Length');
    my @trailers = map { split /\s*,\s*/ } $res->header('Trailer');

    if (defined $enc && $enc eq 'chunked') {
        my $decoded = '';
        my $pos = 0;
        while (1) {
            pos($body) = $pos;
            if ($body =~ /\G0[ \t]*(?:;[^\r\n]*)?\r\n/gc) {
                # last chunk, then optional trailer fields, then CRLF
                for my $t (@trailers) {
                    if ($body !~ /\G\Q$t\E:[^\n]*\r\n/gci) {
                        _no_ending();
                        Test::More::fail("$name - invalid trailer data received (expected $t).");
                        return;
                    }
                }
                if ($body !~ /\G\r\n/gc) {
                    _no_ending();
                    Test::More::fail("$name - invalid chunked data received (expected CRLF).");
                    return;
                }
                $left = substr($body, pos($body)) if pos($body) < length $body;
                last;
            }
            if ($body =~ /\G[ \t]*([A-Fa-f0-9]+)[ \t]*(?:;[^\r\n]*)?\r\n/gc) {
                my $size = hex $1;
                my $start = pos($body);
                if (length($body) - $start < $size) {
                    _no_ending();
                    Test::More::fail("$name - invalid chunked data received "
                                     . "(not enough octets for the data section)");
                    return;
                }
                $decoded .= substr($body, $start, $size);
                $pos = $start + $size;
                if (substr($body, $pos, 2) ne "\r\n") {
                    _no_ending();
                    Test::More::fail("$name - invalid chunked data received (expected CRLF).");
                    return;
                }
                $pos += 2;
                next;
            }
            _no_ending();
            if ($pos < length $body) {
                Test::More::fail("$name - invalid chunked body received: "
                                 . substr($body, $pos));
            } else {
                Test::More::fail("$name - no last chunk found - $body");
            }
            return;
        }
        $res->content($decoded);

    } elsif (defined $len && $len =~ /^\d+$/) {
        if (length $body < $len) {
            warn "WARNING: $name - response body truncated: $len expected, "
                 . "but got " . length($body) . "\n" if !$head_req;
        } elsif (length $body > $len) {
            $left = substr($body, $len);
            $res->content(substr($body, 0, $len));
        }
    }

    return ($res, $raw_headers, $left);
}

# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------

sub get_indexed_value ($$$$) {
    my ($name, $value, $req_idx, $need_array) = @_;
    if ($need_array) {
        return $value->[$req_idx] if ref $value && ref $value eq 'ARRAY';
        bail_out("$name - You asked for many requests, the expected results "
                 . "should be arrays as well.");
    }
    if (ref $value && ref $value eq 'ARRAY') {
        bail_out("$name - SHOULD NOT HAPPEN: idx != 0 and don't need array.")
            if $req_idx != 0;
        return $value->[0];
    }
    return $value;
}

sub check_error_code {
    my ($block, $res, $req_idx, $need_array) = @_;
    my $name = $block->name;
    my $got = ($res && $res->code) || '';
    if (defined $block->error_code_like) {
        my $val = get_indexed_value($name, scalar $block->error_code_like, $req_idx, $need_array);
        Test::More::like($got, qr/$val/sm, "$name - status code ok");
    } elsif (defined $block->error_code) {
        Test::More::is($got, get_indexed_value($name, scalar $block->error_code, $req_idx, $need_array),
                       "$name - status code ok");
    } else {
        Test::More::is($got, 200, "$name - status code ok");
    }
}

sub check_raw_response_headers {
    my ($block, $raw_headers, $req_idx, $need_array) = @_;
    my $name = $block->name;
    $raw_headers //= '';
    if (defined $block->raw_response_headers_like) {
        my $exp = get_indexed_value($name, scalar $block->raw_response_headers_like,
                                    $req_idx, $need_array);
        Test::More::like($raw_headers, qr/$exp/s, "$name - raw resp headers like");
    }
    if (defined $block->raw_response_headers_unlike) {
        my $exp = get_indexed_value($name, scalar $block->raw_response_headers_unlike,
                                    $req_idx, $need_array);
        Test::More::unlike($raw_headers, qr/$exp/s, "$name - raw resp headers unlike");
    }
}

sub check_response_headers {
    my ($block, $res, $raw_headers, $req_idx, $need_array) = @_;
    my $name = $block->name;
    $raw_headers //= '';

    if (defined $block->response_headers) {
        my $headers = parse_headers(get_indexed_value($name, scalar $block->response_headers,
                                                      $req_idx, $need_array));
        for my $key (sort keys %$headers) {
            my $val = $headers->{$key};
            if (!defined $val) {
                Test::More::unlike($raw_headers, qr/^\s*\Q$key\E\s*:/ms,
                                   "$name - header $key not present in the raw headers");
                next;
            }
            $val =~ s/\$ServerPort\b/$ServerPort/g;
            $val =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
            my $actual = $res ? $res->header($key) : undef;
            Test::More::is($actual // '', $val, "$name - header $key ok");
        }

    } elsif (defined $block->response_headers_like) {
        my $headers = parse_headers(get_indexed_value($name, scalar $block->response_headers_like,
                                                      $req_idx, $need_array));
        for my $key (sort keys %$headers) {
            my $val = $headers->{$key} // '';
            my $actual = $res ? $res->header($key) : undef;
            Test::More::like($actual // '', qr/^$val$/, "$name - header $key like ok");
        }
    }
}

sub run_filter_helper {
    my ($block, $filter, $content) = @_;
    my $name = $block->name;
    if (ref $filter eq 'CODE') {
        return $filter->($content);
    }
    bail_out("$name - the --- response_body_filters section only supports "
             . "subroutine reference values and string values") if ref $filter;
    return uc $content      if $filter eq 'uc';
    return lc $content      if $filter eq 'lc';
    return ucfirst $content if $filter eq 'ucfirst';
    return lcfirst $content if $filter eq 'lcfirst';
    return length $content  if $filter eq 'length';
    if ($filter eq 'md5_hex') { require Digest::MD5; return Digest::MD5::md5_hex($content) }
    if ($filter eq 'sha1_hex') { require Digest::SHA; return Digest::SHA::sha1_hex($content) }
    bail_out("$name - unknown filter, \"$filter\", specified in the "
             . "--- response_body_filters section");
}

sub transform_response_body {
    my ($block, $res, $req_idx) = @_;
    return if !$res || !defined $res->content;
    my $filters = $block->response_body_filters;
    return if !defined $filters;
    my $name = $block->name;

    if (!ref $filters) {
        $filters =~ s/^\s+|\s+$//gs;
        $filters = [split /\s+/, $filters];
    } elsif (ref $filters ne 'ARRAY') {
        $filters = [$filters];
    }

    my $f = $filters;
    if (ref $filters->[0] eq 'ARRAY') {
        $f = $filters->[$req_idx];
        bail_out("$name - the ---response_body_filters two-dimensional array "
                 . "unmatch the specified request($req_idx)") if !defined $f;
    }

    my $new = $res->content;
    for my $one (ref $f eq 'ARRAY' ? @$f : ($f)) {
        $new = run_filter_helper($block, $one, $new);
    }
    $res->content($new);
}

sub check_response_body {
    my ($block, $res, $req_idx, $repeated_req_idx, $need_array) = @_;
    my $name = $block->name;

    if (defined(my $file = $block->write_resp_body_file)) {
        if ($res) {
            open my $out, '>', $file
                or bail_out("$name - failed to write to file '$file': $!");
            binmode $out;
            print $out $res->content // '';
            close $out;
        }
    }

    if (defined $block->response_body || defined $block->response_body_eval) {
        my $content = $res ? $res->content : undef;

        my $expected;
        if ($block->response_body_eval) {
            Test::More::diag("$name - response_body_eval is DEPRECATED. "
                             . "Use response_body eval instead.");
            $expected = eval get_indexed_value($name, scalar $block->response_body_eval,
                                               $req_idx, $need_array);
            warn $@ if $@;
        } else {
            $expected = get_indexed_value($name, scalar $block->response_body,
                                          $req_idx, $need_array);
        }

        if (defined $expected && !ref $expected) {
            $expected =~ s/\$ServerPort\b/$ServerPort/g;
            $expected =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
            $expected = expand_env_in_text($expected, $name, $RandPorts);
        }

        if (ref $expected) {
            Test::More::like($content, $expected,
                "$name - response_body - like (repeated req $repeated_req_idx, req $req_idx)");
        } elsif ($NoLongString) {
            Test::More::is($content, $expected,
                "$name - response_body - response is expected (repeated req $repeated_req_idx, req $req_idx)");
        } else {
            _is_string($content, $expected,
                "$name - response_body - response is expected (repeated req $repeated_req_idx, req $req_idx)");
        }

    } elsif (defined $block->response_body_like || defined $block->response_body_unlike) {
        my ($patterns, $type) = defined $block->response_body_like
            ? ($block->response_body_like, 'like')
            : ($block->response_body_unlike, 'unlike');
        my $content = $res ? $res->content : undef;
        my $pat = get_indexed_value($name, $patterns, $req_idx, $need_array);
        $pat =~ s/\$ServerPort\b/$ServerPort/g;
        $pat =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
        my $summary = trim($content) // '';
        my $desc = "$name - response_body_$type - response is expected ($summary)";
        if ($type eq 'like') {
            Test::More::like($content, qr/$pat/s, $desc);
        } else {
            Test::More::unlike($content, qr/$pat/s, $desc);
        }
    }

    for my $check (@ResponseBodyChecks) {
        $check->($block, $res ? $res->content : undef, $req_idx, $repeated_req_idx, 0);
    }
}

sub error_log_data () {
    # give nginx a moment to write log-phase messages
    sleep $TestNginxSleep * 3;
    open my $in, '<', $ErrLogFile or return [];
    binmode $in;
    if (!$CheckAccumErrLog && $ErrLogFilePos && $ErrLogFilePos > 0) {
        seek $in, $ErrLogFilePos, 0;
    }
    my @lines = <$in>;
    $ErrLogFilePos = tell($in) if !$CheckAccumErrLog;
    close $in;
    return \@lines;
}

sub access_log_data () {
    sleep $TestNginxSleep * 3;
    open my $in, '<', $AccLogFile or return [];
    my @lines = <$in>;
    close $in;
    return \@lines;
}

sub value_contains {
    my ($val, $pat) = @_;
    return $val =~ /\Q$pat\E/ if !ref $val || ref $val eq 'Regexp';
    if (ref $val eq 'ARRAY') {
        for my $v (@$val) {
            return 1 if defined $v && value_contains($v, $pat);
        }
    }
    return undef;
}

sub _pattern_list {
    my $pats = shift;
    if (!ref $pats) {
        chomp $pats;
        return [split /\n+/, $pats];
    }
    return [$pats] if ref $pats eq 'Regexp';
    return [@$pats];
}

sub _line_matches {
    my ($line, $pat) = @_;
    return ref $pat ? $line =~ /$pat/ : index($line, $pat) >= 0;
}

# $extra: lines (nginx stderr) that also count, for --- must_die
sub check_error_log {
    my ($block, $res, $repeated_req_idx, $need_array, $extra) = @_;
    my $name = $block->name;
    my $lines;
    my $get_lines = sub {
        $lines ||= [ @{ error_log_data() }, @{ $extra || [] } ];
    };

    my %warn_for = (alert => 1, crit => 1, emerg => 1);

    my $grep_pats = $block->grep_error_log;
    if (defined $grep_pats) {
        my $grep_pat = ref $grep_pats eq 'ARRAY' ? $grep_pats->[$repeated_req_idx] : $grep_pats;
        my $expected = $block->grep_error_log_out;
        bail_out("$name - No --- grep_error_log_out defined but --- grep_error_log is defined")
            if !defined $expected;
        $expected = expand_env_in_text($expected, $name, $RandPorts);
        $expected = $expected->[$repeated_req_idx] if ref $expected eq 'ARRAY';
        my $matched = '';
        for my $line (@{ $get_lines->() }) {
            if ((ref $grep_pat && $line =~ /$grep_pat/) || $line =~ /\Q$grep_pat\E/) {
                $matched .= "$&\n" if $& !~ /\n/;
            }
        }
        my $desc = "$name - grep_error_log_out (req $repeated_req_idx)";
        if (ref $expected eq 'Regexp') {
            Test::More::like($matched, $expected, $desc);
        } else {
            is_str($matched, $expected, $desc);
        }
    } elsif (defined $block->grep_error_log_out) {
        bail_out("$name - No --- grep_error_log defined but --- grep_error_log_out is defined");
    }

    for my $section (qw(error_log no_error_log)) {
        my $pats = $block->$section;
        next if !defined $pats;
        for my $lvl (keys %warn_for) {
            delete $warn_for{$lvl} if value_contains($pats, "[$lvl");
        }
    }

    if (defined $block->error_log) {
        my $pats = _pattern_list(scalar $block->error_log);
        for my $line (@{ $get_lines->() }) {
            for my $pat (@$pats) {
                next if !defined $pat;
                if (_line_matches($line, $pat)) {
                    Test::More::pass("$name - pattern \"$pat\" matches a line in error.log (req $repeated_req_idx)");
                    undef $pat;
                }
            }
        }
        for my $pat (@$pats) {
            next if !defined $pat;
            Test::More::fail("$name - pattern \"$pat\" should match a line in error.log (req $repeated_req_idx)");
        }
    }

    if (defined $block->no_error_log) {
        my $pats = _pattern_list(scalar $block->no_error_log);
        my %found;
        my $all = $get_lines->();
        for my $i (0 .. $#$all) {
            my $line = $all->[$i];
            for my $pat (@$pats) {
                next if !defined $pat;
                next if !_line_matches($line, $pat);
                if ($found{$pat}++) {
                    _no_ending();
                }
                my @more = @$all[$i + 1 .. min($i + 9, $#$all)];
                Test::More::fail("$name - pattern \"" . fmt_str($pat)
                    . "\" should not match any line in error.log but matches line \""
                    . fmt_str($line) . "\" (req $repeated_req_idx)\n" . join('', @more));
            }
        }
        for my $pat (@$pats) {
            next if !defined $pat || $found{$pat};
            Test::More::pass("$name - pattern \"" . fmt_str($pat)
                             . "\" does not match a line in error.log (req $repeated_req_idx)");
        }
    }

    if (%warn_for) {
        my $re = join '|', map { quotemeta "[$_]" } sort keys %warn_for;
        my $all = $get_lines->();
        my $n = @$all - @{ $extra || [] };    # error.log lines only
        for my $line (@$all[0 .. $n - 1]) {
            warn "WARNING: $name - " . fmt_str($line) . "\n" if $line =~ /$re/;
        }
    }

    for my $line (@{ $lines || [] }) {
        if ($line =~ /\bAssertion .*?failed\b/) {
            _no_ending();
            chomp(my $l = $line);
            Test::More::fail("$name - $l\n");
        }
    }
}

sub check_access_log {
    my ($block, $repeated_req_idx) = @_;
    my $name = $block->name;
    my $lines;

    if (defined $block->access_log) {
        my $pats = _pattern_list(scalar $block->access_log);
        $lines ||= access_log_data();
        for my $line (@$lines) {
            for my $pat (@$pats) {
                next if !defined $pat;
                if (_line_matches($line, $pat)) {
                    Test::More::pass("$name - pattern \"$pat\" matches a line in access.log (req $repeated_req_idx)");
                    undef $pat;
                }
            }
        }
        for my $pat (@$pats) {
            next if !defined $pat;
            Test::More::fail("$name - pattern \"$pat\" should match a line in access.log (req $repeated_req_idx)");
        }
    }

    if (defined $block->no_access_log) {
        my $pats = _pattern_list(scalar $block->no_access_log);
        $lines ||= access_log_data();
        my %found;
        for my $line (@$lines) {
            for my $pat (@$pats) {
                next if !defined $pat || !_line_matches($line, $pat);
                _no_ending() if $found{$pat}++;
                Test::More::fail("$name - pattern \"" . fmt_str($pat)
                    . "\" should not match any line in access.log but matches line \""
                    . fmt_str($line) . "\" (req $repeated_req_idx)");
            }
        }
        for my $pat (@$pats) {
            next if !defined $pat || $found{$pat};
            Test::More::pass("$name - pattern \"" . fmt_str($pat)
                             . "\" does not match a line in access.log (req $repeated_req_idx)");
        }
    }
}


# The real module evaluates `--- init` code in package Test::Nginx::Util, under
# its `use strict; use warnings;`: code there sees that package's subs, not
# Test::Nginx::Socket's. Evaluated the same way here, so a .t file that works
# with this runner works with the real one.
package Test::Nginx::Util;

use strict;
use warnings;

sub _eval_init {
    eval $_[0];
    return $@;
}

package Test::Nginx::Socket;

1;
