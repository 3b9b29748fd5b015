//! Raft between controllers, carried in RocketMQ remoting frames on the peer port
//! (`controllerDLegerPeers`): one request code per Raft RPC, the openraft message as the JSON
//! body, and the peer's `Result` as the JSON body of the answer. Reusing the remoting
//! transport gives the peer port the same framing, connection handling and TLS as every other
//! port, instead of a second protocol stack.

// The error side *is* the response, moved out once per request; boxing it would only add an
// allocation to every error reply.
#![allow(clippy::result_large_err)]

use bytes::Bytes;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use ferrymq_protocol::{RemotingCommand, RequestCode, ResponseCode};
use ferrymq_remoting::{Connection, RemotingClient, RequestHandler};

use super::{NodeId, Raft, TypeConfig};

type RpcError<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

/// Dials peers; one [`Peer`] per target, all sharing one remoting client.
#[derive(Clone)]
pub struct Network {
    client: RemotingClient,
}

impl Network {
    pub fn new(client: RemotingClient) -> Network {
        Network { client }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            client: self.client.clone(),
            target,
            addr: node.addr.clone(),
        }
    }
}

/// The connection to one peer controller.
pub struct Peer {
    client: RemotingClient,
    target: NodeId,
    addr: String,
}

impl Peer {
    async fn call<Req: Serialize, Resp: DeserializeOwned, E>(
        &self,
        code: RequestCode,
        rpc: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        E: std::error::Error + DeserializeOwned,
    {
        let body = serde_json::to_vec(rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let request = RemotingCommand::request(code).with_body(Bytes::from(body));
        let response = self
            .client
            .invoke(&self.addr, request, option.hard_ttl())
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        if response.response_code() != ResponseCode::Success {
            let e = std::io::Error::other(format!(
                "peer {} answered {:?}: {}",
                self.addr,
                response.response_code(),
                response.remark.as_deref().unwrap_or("")
            ));
            return Err(RPCError::Network(NetworkError::new(&e)));
        }
        let result: Result<Resp, RaftError<NodeId, E>> =
            serde_json::from_slice(&response.body.to_bytes())
                .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcError> {
        self.call(RequestCode::RaftAppendEntries, &rpc, &option)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcError<InstallSnapshotError>> {
        self.call(RequestCode::RaftInstallSnapshot, &rpc, &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcError> {
        self.call(RequestCode::RaftVote, &rpc, &option).await
    }
}

/// Serves the Raft RPCs of the peer port into the local Raft node.
pub struct PeerService {
    pub raft: Raft,
}

fn answer<T: Serialize>(request: &RemotingCommand, result: &T) -> RemotingCommand {
    match serde_json::to_vec(result) {
        Ok(body) => RemotingCommand::response_to(request, ResponseCode::Success)
            .with_body(Bytes::from(body)),
        Err(e) => {
            RemotingCommand::error_response(request, ResponseCode::SystemError, e.to_string())
        }
    }
}

fn parse<T: DeserializeOwned>(request: &RemotingCommand) -> Result<T, RemotingCommand> {
    serde_json::from_slice(&request.body.to_bytes()).map_err(|e| {
        RemotingCommand::error_response(
            request,
            ResponseCode::SystemError,
            format!("malformed raft message: {e}"),
        )
    })
}

impl RequestHandler for PeerService {
    async fn handle(
        &self,
        _conn: &Connection,
        request: RemotingCommand,
    ) -> Option<RemotingCommand> {
        let response = match request.request_code() {
            RequestCode::RaftAppendEntries => match parse(&request) {
                Ok(rpc) => answer(&request, &self.raft.append_entries(rpc).await),
                Err(r) => r,
            },
            RequestCode::RaftVote => match parse(&request) {
                Ok(rpc) => answer(&request, &self.raft.vote(rpc).await),
                Err(r) => r,
            },
            RequestCode::RaftInstallSnapshot => match parse(&request) {
                Ok(rpc) => answer(&request, &self.raft.install_snapshot(rpc).await),
                Err(r) => r,
            },
            _ => RemotingCommand::unsupported(&request),
        };
        Some(response)
    }
}
